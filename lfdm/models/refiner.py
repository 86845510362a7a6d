"""`PhotoRefiner`: paints what a photo never showed (mouth interiors, teeth, eye whites) at the photo's resolution.

When a photo is animated at its own size (`lfdm.photo.render_photo_video`), every frame is the photo's pixels warped
by the upsampled flows. Where the occlusion maps say the content is new, a warp has nothing to show, and the LFAE
decoder's frame (the model's size, 64 px for the shipped model) is all there is: scaled up it is a blur. The refiner
works in the model's frame at `scale` times its size (256 px for the shipped model) and takes, per frame:

- `warped` (B, 3, H, W): the photo warped by the frame's displacement (sharp where the warp is right);
- `decoded` (B, 3, H, W): the decoder's frame, bilinearly upsampled (right colours and layout, no detail);
- `decoded_start` (B, 3, H, W): the decoder's frame 0 warped by the same displacement (what the decoder would show
  if the content had only moved);
- `new_content` (B, 1, H, W) in [0, 1]: how much of each pixel is new since frame 0 (from the occlusion maps).

The decoder's change `decoded - decoded_start` is what it painted beyond the motion (a dark mouth opening, an eye
closing), in the decoder's colours but relative to its own picture of frame 0; added to the warped photo it keeps
the photo's colours and detail (teeth the photo shows stay). The refiner returns `paint = warped + (decoded -
decoded_start) + residual` and a gate g in [0, 1]; the frame is `warped + g * (paint - warped)`. Its last layer
starts at zero, so an untrained refiner adds the decoder's change where content is new (g = new content); training
on SynthFace rendered large with photographic looks (`lfdm.training.refiner`) teaches it detail and where the warp
alone is right.

Fast on a CPU: the layers work on 4 x 4 blocks folded into channels (pixel unshuffle, as ESPCN's sub-pixel
convolutions), and one full-resolution convolution finishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

_GATE_LIMIT = 1e-3  # the starting gate is new content clipped to [limit, 1 - limit], so its logit is finite


@dataclass
class RefinerOutput(BaseOutput):
    """image (B, 3, H, W): the refined frame, `warped + gate * (paint - warped)`; paint (B, 3, H, W): the painted
    frame; gate (B, 1, H, W) in [0, 1]: how much of `paint` each pixel takes."""

    image: torch.Tensor
    paint: torch.Tensor
    gate: torch.Tensor


class _ResBlock(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class PhotoRefiner(ModelMixin, ConfigMixin):
    """Paints new content at `scale` x the model's frame size (see the module docstring).

    The work is done on `patch` x `patch` blocks folded into channels (pixel unshuffle), which CPUs convolve far
    faster than thin full-resolution layers; the blocks unfold into `unfolded_channels` full-resolution channels, and
    one 3x3 convolution over them and the inputs gives the residual and the gate.

    Args:
        scale: the refiner's frame is `scale * image_size` pixels wide (the LFAE's `image_size`).
        patch: side of the folded blocks, pixels; input sides must be multiples of it.
        channels: width of the folded layers.
        num_res_blocks: residual blocks on the folded blocks.
        unfolded_channels: full-resolution channels after unfolding.
    """

    @register_to_config
    def __init__(
        self, scale: int = 4, patch: int = 4, channels: int = 48, num_res_blocks: int = 3, unfolded_channels: int = 8
    ):
        super().__init__()
        if scale < 1 or patch < 1:
            raise ValueError(f"`scale` and `patch` must be >= 1; got {scale} and {patch}.")
        inputs = 13  # warped, decoded, decoded_start, new content, decoded - decoded_start
        self.fold = nn.PixelUnshuffle(patch)
        self.stem = nn.Conv2d(inputs * patch * patch, channels, 3, padding=1)
        self.blocks = nn.Sequential(*(_ResBlock(channels) for _ in range(num_res_blocks)))
        self.expand = nn.Conv2d(channels, unfolded_channels * patch * patch, 3, padding=1)
        self.unfold = nn.PixelShuffle(patch)
        self.head = nn.Conv2d(unfolded_channels + inputs, 4, 3, padding=1)  # residual RGB, gate logit
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(
        self, warped: torch.Tensor, decoded: torch.Tensor, decoded_start: torch.Tensor, new_content: torch.Tensor
    ) -> RefinerOutput:
        """warped, decoded, decoded_start (B, 3, H, W) in [0, 1]; new_content (B, 1, H, W) in [0, 1]; H, W multiples
        of `patch`. Returns `RefinerOutput` (image, paint (B, 3, H, W), gate (B, 1, H, W))."""
        if not (warped.shape == decoded.shape == decoded_start.shape) or warped.ndim != 4 or warped.shape[1] != 3:
            raise ValueError(
                f"warped, decoded and decoded_start must all be (B, 3, H, W); got {tuple(warped.shape)}, "
                f"{tuple(decoded.shape)} and {tuple(decoded_start.shape)}."
            )
        if new_content.shape != (warped.shape[0], 1, *warped.shape[2:]):
            raise ValueError(f"new_content must be (B, 1, H, W) like warped; got {tuple(new_content.shape)}.")
        patch = self.config.patch
        if warped.shape[2] % patch or warped.shape[3] % patch:
            raise ValueError(f"the refiner's input sides must be multiples of {patch}; got {tuple(warped.shape[2:])}.")
        dtype = self.stem.weight.dtype
        change = decoded.float() - decoded_start.float()
        inputs = torch.cat([warped, decoded, decoded_start, new_content, change], dim=1).to(dtype)
        folded = self.blocks(F.silu(self.stem(self.fold(inputs))))  # (B, C, H / patch, W / patch)
        unfolded = F.silu(self.unfold(self.expand(F.silu(folded))))  # (B, unfolded_channels, H, W)
        residual, gate_logit = self.head(torch.cat([unfolded, inputs], dim=1)).float().split([3, 1], dim=1)
        prior = torch.logit(new_content.float().clamp(_GATE_LIMIT, 1 - _GATE_LIMIT))
        gate = torch.sigmoid(gate_logit + prior)
        paint = warped.float() + change + residual
        image = warped.float() + gate * (paint - warped.float())
        return RefinerOutput(image=image, paint=paint, gate=gate)
