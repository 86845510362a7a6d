"""Generator: image encoder, occlusion-gated warping at every decoder scale, decoder.

State-dict keys are the authors' (`first.*`, `down_blocks.*`, `bottleneck.r{i}.*`, `up_blocks.*`, `final.*`,
`pixelwise_flow_predictor.*`). The flow predictor is a sub-module here only so that the keys match the released
checkpoints; `LatentFlowAutoencoder.estimate_flow` is the way to call it.

Unlike the authors' generator, encoding and decoding are separate calls, so that one reference can be encoded once
and decoded with many flows (a whole video in one batch).
"""

from __future__ import annotations

import torch
from torch import nn

from lfdm.models.blocks import (
    DownBlock2d,
    ResBlock2d,
    SameBlock2d,
    UpBlock2d,
    hourglass_width,
    resize_flow,
    resize_map,
    warp,
)
from lfdm.models.lfae.flow_predictor import PixelwiseFlowPredictor


class OcclusionGatedWarp:
    """Warps features with one flow and blends them by the occlusion map: warp(z, f) * m + previous * (1 - m).

    Flow and occlusion are resized (bilinear, align_corners=False) to each feature size once and cached.
    flow (N, h, w, 2) absolute sampling grid; occlusion (N, 1, h, w) in [0, 1], 1 = use the warped feature.
    """

    def __init__(self, flow: torch.Tensor, occlusion: torch.Tensor):
        self.flow, self.occlusion = flow, occlusion
        self._resized: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def at(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow (N, *size, 2), occlusion (N, 1, *size)) resized to `size`."""
        if size not in self._resized:
            self._resized[size] = (resize_flow(self.flow, size), resize_map(self.occlusion, size))
        return self._resized[size]

    def warp(self, features: torch.Tensor) -> torch.Tensor:
        """features (N, C, H, W) -> warped (N, C, H, W) (not gated)."""
        flow, _ = self.at(tuple(features.shape[2:]))
        return warp(features, flow)

    def blend(self, warped: torch.Tensor, previous: torch.Tensor | None) -> torch.Tensor:
        """warped * m + previous * (1 - m), or warped * m without `previous`; in `previous`'s memory layout."""
        _, occlusion = self.at(tuple(warped.shape[2:]))
        if previous is None:
            return warped * occlusion
        # previous + m * (warped - previous) in one pass, in the dtype the products would have (mixed precision)
        dtype = torch.promote_types(torch.promote_types(previous.dtype, warped.dtype), occlusion.dtype)
        return torch.lerp(previous.to(dtype), warped.to(dtype), occlusion.to(dtype))


class Generator(nn.Module):
    """Encoder (7x7 SameBlock + `num_down_blocks` DownBlocks) and decoder (ResBlocks + UpBlocks + 7x7 conv).

    At 128 px with two down-blocks the encoder pyramid is 64x128x128, 128x64x64, 256x32x32.
    """

    def __init__(
        self,
        *,
        num_regions: int,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        flow_block_expansion: int,
        flow_max_features: int,
        flow_num_blocks: int,
        flow_scale_factor: float,
        revert_axis_swap: bool,
        flow_residual: bool = False,
    ):
        super().__init__()
        self.pixelwise_flow_predictor = PixelwiseFlowPredictor(
            num_regions=num_regions,
            num_channels=num_channels,
            block_expansion=flow_block_expansion,
            max_features=flow_max_features,
            num_blocks=flow_num_blocks,
            scale_factor=flow_scale_factor,
            revert_axis_swap=revert_axis_swap,
            residual_flow=flow_residual,
        )
        width = [hourglass_width(block_expansion, max_features, level) for level in range(num_down_blocks + 1)]
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=7, padding=3)
        self.down_blocks = nn.ModuleList(DownBlock2d(width[i], width[i + 1]) for i in range(num_down_blocks))
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width[level + 1], width[level]) for level in reversed(range(num_down_blocks))
        )
        self.bottleneck = nn.Sequential()
        for index in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{index}", ResBlock2d(width[-1]))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=7, padding=3)
        self.feature_channels = width[-1]

    def encode_pyramid(self, image: torch.Tensor) -> list[torch.Tensor]:
        """image (B, C, H, W) in [0, 1] -> encoder outputs finest first; the last is (B, C_z, H / 2**d, W / 2**d)."""
        pyramid = [self.first(image)]
        for block in self.down_blocks:
            pyramid.append(block(pyramid[-1]))
        return pyramid

    def decode(
        self, image: torch.Tensor, pyramid: list[torch.Tensor], flow: torch.Tensor, occlusion: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode one frame per flow; every input has the same batch size N.

        image (N, C, H, W) in [0, 1]: the reference; pyramid: its `encode_pyramid`; flow (N, h, w, 2);
        occlusion (N, 1, h, w) in [0, 1]. Returns (prediction (N, C, H, W) in [0, 1], warped image (N, C, H, W)).

        Paper notation: z = m * W(z_0, f) at the bottleneck; at every other scale the warped reference feature is
        blended with the decoder's own output by m, and finally the warped image with the decoded image.
        """
        gate = OcclusionGatedWarp(flow, occlusion)
        # Warping and blending run in at least float32 (`warp`); what enters a layer is in the layer's dtype, so a
        # bfloat16 network gets bfloat16 inputs (under autocast the weights are float32 and this casts nothing).
        dtype = self.final.weight.dtype
        warped_bottleneck = gate.warp(pyramid[-1])
        # channels-last from here on: oneDNN's fastest CPU convolutions, kept by every later layer and blend
        out = gate.blend(warped_bottleneck, None).to(dtype).contiguous(memory_format=torch.channels_last)
        out = self.bottleneck(out)
        for index, block in enumerate(self.up_blocks):
            skip = pyramid[-(index + 1)]
            warped_skip = warped_bottleneck if index == 0 else gate.warp(skip)
            out = block(gate.blend(warped_skip, out).to(dtype))
        out = gate.blend(gate.warp(pyramid[0]), out).to(dtype)
        out = torch.sigmoid(self.final(out))
        warped_image = gate.warp(image)
        return gate.blend(warped_image, out).to(dtype), warped_image.to(dtype)
