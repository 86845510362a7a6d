"""`ActionClassifier`: a small 3D CNN that names the action of a video, the judge of generated videos.

It scores what a generator should get right, the motion: the input is the clip at `input_size` px together with
its difference to frame 0, so an expression is recognised from how the face changes, not from who it is. The
pooled activations of the last block (`features`, (B, D)) are what the Fréchet classifier distance compares
(`lfdm.evaluation.frechet`).

    classifier = ActionClassifier(labels=list(SYNTHFACE_LABELS))
    out = classifier(videos)          # videos (B, 3, F, H, W) in [0, 1], any F and H = W
    out.logits.shape, out.features.shape   # (B, 7), (B, 128)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn


@dataclass
class ClassifierOutput(BaseOutput):
    """logits (B, num_labels), unnormalised; features (B, D) >= 0, the pooled last block (D = channels[-1])."""

    logits: torch.Tensor
    features: torch.Tensor


def resample_clip(videos: torch.Tensor, num_frames: int, size: int) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, C, num_frames, size, size): evenly spaced frames (first and last kept), area resize.

    The frame indices are `int(linspace(0, F - 1, num_frames))`, the `uniform` clip sampling of the data sets, so a
    clip of any length is read over its whole duration.
    """
    frames = videos.shape[2]
    if frames != num_frames:
        indices = np.linspace(0, frames - 1, num_frames).astype(np.int64)
        videos = videos[:, :, torch.as_tensor(indices, device=videos.device)]
    if videos.shape[-2:] != (size, size):
        b = videos.shape[0]
        flat = rearrange(videos, "b c f h w -> (b f) c h w")
        mode = "area" if videos.shape[-1] >= size else "bilinear"
        flat = F.interpolate(flat, size=(size, size), mode=mode)
        videos = rearrange(flat, "(b f) c h w -> b c f h w", b=b)
    return videos


class _ConvBlock(nn.Sequential):
    """Conv3d 3x3x3 with `stride` (t, h, w) -> GroupNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: tuple[int, int, int], groups: int):
        super().__init__(
            nn.Conv3d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
            nn.GroupNorm(min(groups, out_channels), out_channels),
            nn.ReLU(inplace=True),
        )


class ActionClassifier(ModelMixin, ConfigMixin):
    """A 3D CNN over (B, 3, F, H, W) videos in [0, 1] -> `ClassifierOutput(logits, features)`.

    Args:
        labels: class names in logit order.
        num_frames: frames the network sees; longer or shorter clips are resampled evenly (`resample_clip`).
        input_size: frame side the network sees, px; frames are area-resized to it (small sizes also ignore the
            fine texture a decoder blurs).
        channels: widths of the conv blocks; the last one is the feature dimension D.
        frame_difference: also feed `frame - frame_0` (3 more input channels): the motion, free of appearance.
        norm_groups: GroupNorm groups (per-video statistics, so a score never depends on the rest of the batch).
    """

    @register_to_config
    def __init__(
        self,
        *,
        labels: list[str],
        num_frames: int = 16,
        input_size: int = 32,
        channels: tuple[int, ...] = (16, 32, 64, 128),
        frame_difference: bool = True,
        norm_groups: int = 8,
    ):
        super().__init__()
        if len(labels) < 2:
            raise ValueError(f"an action classifier needs at least 2 labels; got {list(labels)}.")
        if num_frames < 1 or input_size < 4:
            raise ValueError(f"need num_frames >= 1 and input_size >= 4; got {num_frames} and {input_size}.")
        blocks, in_channels = [], 6 if frame_difference else 3
        frames, size = num_frames, input_size
        for index, width in enumerate(channels):
            # Strided convolutions halve space in every block but the last, and time from the second block on,
            # while there is something to halve: the cost of a block is set by its (smaller) output.
            last = index == len(channels) - 1
            space = 2 if size >= 2 and not last else 1
            time = 2 if frames >= 2 and 0 < index and not last else 1
            frames, size = -(-frames // time), -(-size // space)
            blocks.append(_ConvBlock(in_channels, width, (time, space, space), norm_groups))
            in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_channels, len(labels))

    @property
    def labels(self) -> list[str]:
        return list(self.config.labels)

    @property
    def feature_dim(self) -> int:
        return int(self.config.channels[-1])

    def prepare(self, videos: torch.Tensor) -> torch.Tensor:
        """(B, 3, F, H, W) in [0, 1] -> the network input (B, 3 or 6, num_frames, input_size, input_size)."""
        if videos.dim() != 5 or videos.shape[1] != 3:
            raise ValueError(f"videos must be (B, 3, F, H, W) in [0, 1]; got shape {tuple(videos.shape)}.")
        clip = resample_clip(videos.to(self.dtype), self.config.num_frames, self.config.input_size)
        inputs = clip * 2 - 1
        if self.config.frame_difference:
            inputs = torch.cat([inputs, (clip - clip[:, :, :1]) * 4], dim=1)  # differences are small: scale up
        return inputs

    def forward(self, videos: torch.Tensor, return_dict: bool = True) -> ClassifierOutput | tuple:
        """videos (B, 3, F, H, W) in [0, 1] -> logits (B, num_labels), features (B, D)."""
        hidden = self.blocks(self.prepare(videos))
        features = hidden.mean(dim=(2, 3, 4))  # global average over (f, h, w): (B, D)
        logits = self.head(features)
        if not return_dict:
            return logits, features
        return ClassifierOutput(logits=logits, features=features)

    @torch.no_grad()
    def predict(self, videos: torch.Tensor, batch_size: int = 64) -> ClassifierOutput:
        """`forward` in eval mode over batches of `batch_size`; outputs float32 on the CPU."""
        was_training = self.training
        self.eval()
        logits, features = [], []
        for chunk in videos.split(batch_size):
            out = self(chunk.to(self.device))
            logits.append(out.logits.float().cpu())
            features.append(out.features.float().cpu())
        self.train(was_training)
        return ClassifierOutput(logits=torch.cat(logits), features=torch.cat(features))
