"""Building blocks of the space-time U-Net (`lfdm.models.unet3d.FlowUNet3D`).

Videos are `(batch, channels, frames, height, width)`; every convolution is per frame (kernel (1, k, k)).

Speed: the U-Net keeps its videos channels-last in memory (`torch.channels_last_3d`, physically
(batch, frames, height, width, channels)). Then folding the frames into the batch is free, every per-frame
convolution runs as a 2-D convolution on channels-last images (oneDNN's fastest CPU kernels, no layout reorders),
and the attention layers read their tokens without copies. Tiny frames (4x4 at the lowest level of the paper's
U-Net) are the exception: there oneDNN's channels-first kernels are about 1.7x faster, and the copies are small.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lfdm.models.attention import PreNormResidual, SpatialLinearAttention, TemporalAttention

TINY_FRAME_PIXELS = 16  # frames of at most this many pixels are convolved channels-first (see the module docstring)


def _frames_for_conv(x: torch.Tensor) -> torch.Tensor:
    """(b, c, f, h, w) -> (b*f, c, h, w) in the memory layout oneDNN convolves fastest (a view when it already is)."""
    frames = rearrange(x, "b c f h w -> (b f) c h w")
    tiny = frames.shape[-2] * frames.shape[-1] <= TINY_FRAME_PIXELS
    return frames.contiguous(memory_format=torch.contiguous_format if tiny else torch.channels_last)


def sinusoidal_embedding(timestep: torch.Tensor, dim: int) -> torch.Tensor:
    """timestep (B,) -> (B, dim) float32: `[sin(t w_i), cos(t w_i)]`, w_i = 10000^(-i / (dim/2 - 1)), i < dim/2.

    The frequencies are float32 and multiply the timestep as given (int64 from the schedulers), exactly as the
    paper's model computes them: at t = 999 a differently rounded frequency moves sin/cos by up to 1e-4.
    """
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=timestep.device) * -(math.log(10000) / (half - 1)))
    angles = timestep[:, None] * frequencies[None, :]
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class TimestepEmbedding(nn.Module):
    """timestep (B,) -> (B, time_dim): sinusoidal embedding of width `dim`, Linear, GELU, Linear."""

    def __init__(self, dim: int, time_dim: int):
        super().__init__()
        self.dim = dim
        self.linear_1 = nn.Linear(dim, time_dim)
        self.act = nn.GELU()
        self.linear_2 = nn.Linear(time_dim, time_dim)

    def forward(self, timestep: torch.Tensor) -> torch.Tensor:
        embedding = sinusoidal_embedding(timestep, self.dim).to(self.linear_1.weight.dtype)
        return self.linear_2(self.act(self.linear_1(embedding)))


class FrameConv3d(nn.Conv3d):
    """`nn.Conv3d` with a (1, k, k) kernel, run as a 2-D convolution over the frames folded into the batch.

    Same parameters and state-dict keys as `nn.Conv3d`. x (b, c_in, f, h, w) -> (b, c_out, f, h', w'); a
    channels-last input gives a channels-last output.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.kernel_size[0] != 1 or self.stride[0] != 1 or self.padding[0] != 0:
            raise ValueError(f"FrameConv3d works per frame: kernel, stride and padding must be 1, 1, 0 in time; got "
                             f"{self.kernel_size}, {self.stride}, {self.padding}.")  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = _frames_for_conv(x)
        padding = self.padding[1:]
        if self.padding_mode != "zeros":
            frames = F.pad(frames, self._reversed_padding_repeated_twice[:4], mode=self.padding_mode)
            padding = 0
        out = F.conv2d(frames, self.weight.squeeze(2), self.bias, self.stride[1:], padding)
        return rearrange(out, "(b f) c h w -> b c f h w", b=x.shape[0])


class FrameConvTranspose3d(nn.ConvTranspose3d):
    """`nn.ConvTranspose3d` with a (1, k, k) kernel, run per frame like `FrameConv3d` (same keys)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames = _frames_for_conv(x)
        out = F.conv_transpose2d(
            frames, self.weight.squeeze(2), self.bias, self.stride[1:], self.padding[1:], self.output_padding[1:]
        )
        return rearrange(out, "(b f) c h w -> b c f h w", b=x.shape[0])


class ConvNormAct(nn.Module):
    """Per-frame 3x3 convolution, GroupNorm, optional FiLM `x * (scale + 1) + shift`, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.conv = FrameConv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = torch.addcmul(shift, x, scale + 1)  # x * (scale + 1) + shift in one pass
        return self.act(x)


class ResnetBlock(nn.Module):
    """Two ConvNormAct blocks with a residual connection; FiLM-conditioned on `condition` when `condition_dim`."""

    def __init__(self, in_channels: int, out_channels: int, *, groups: int, condition_dim: int | None = None):
        super().__init__()
        self.film = None
        if condition_dim is not None:
            self.film = nn.Sequential(nn.SiLU(), nn.Linear(condition_dim, out_channels * 2))
        self.block1 = ConvNormAct(in_channels, out_channels, groups)
        self.block2 = ConvNormAct(out_channels, out_channels, groups)
        self.shortcut = FrameConv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        scale_shift = None
        if self.film is not None:
            film = rearrange(self.film(condition), "b c -> b c 1 1 1")
            scale_shift = film.chunk(2, dim=1)
        h = self.block2(self.block1(x, scale_shift))
        return h + self.shortcut(x)


class Upsample(nn.Module):
    """x2 spatial up-sampling: a (1, 4, 4) transposed convolution, or nearest x2 then a (1, 3, 3) convolution."""

    def __init__(self, channels: int, mode: str, padding_mode: str):
        super().__init__()
        self.mode = mode
        if mode == "deconv":
            self.conv = FrameConvTranspose3d(channels, channels, (1, 4, 4), (1, 2, 2), (0, 1, 1))
        else:
            self.conv = FrameConv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1), padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class Downsample(nn.Module):
    """x2 spatial down-sampling with a (1, 4, 4) stride-(1, 2, 2) convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = FrameConv3d(channels, channels, (1, 4, 4), (1, 2, 2), (0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class UNetLevel(nn.Module):
    """One resolution of the U-Net: two residual blocks, spatial linear attention, temporal attention.

    `forward` gives the features before re-sampling; the caller applies `.resample` (down or up, or Identity at the
    lowest level) so that it can keep the skip connection in between.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        resample: nn.Module,
        *,
        groups: int,
        condition_dim: int,
        heads: int,
        spatial_dim_head: int,
        temporal_dim_head: int,
    ):
        super().__init__()
        self.resnet1 = ResnetBlock(in_channels, out_channels, groups=groups, condition_dim=condition_dim)
        self.resnet2 = ResnetBlock(out_channels, out_channels, groups=groups, condition_dim=condition_dim)
        spatial = SpatialLinearAttention(out_channels, heads, spatial_dim_head)
        self.spatial_attention = PreNormResidual(out_channels, spatial)
        temporal = TemporalAttention(out_channels, heads, temporal_dim_head)
        self.temporal_attention = PreNormResidual(out_channels, temporal)
        self.resample = resample

    def forward(self, x: torch.Tensor, condition: torch.Tensor, **temporal_kwargs) -> torch.Tensor:
        """x (b, c_in, f, h, w), condition (b, condition_dim) -> (b, c_out, f, h, w)."""
        x = self.resnet2(self.resnet1(x, condition), condition)
        x = self.spatial_attention(x)
        return self.temporal_attention(x, **temporal_kwargs)
