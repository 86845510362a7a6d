"""Building blocks of the space-time U-Net (`lfdm.models.unet3d.FlowUNet3D`).

Videos are `(batch, channels, frames, height, width)`; every convolution is per frame (kernel (1, k, k)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lfdm.models.attention import PreNormResidual, SpatialLinearAttention, TemporalAttention


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


class ConvNormAct(nn.Module):
    """Per-frame 3x3 convolution, GroupNorm, optional FiLM `x * (scale + 1) + shift`, SiLU."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, (1, 3, 3), padding=(0, 1, 1))
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor, scale_shift: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        x = self.norm(self.conv(x))
        if scale_shift is not None:
            scale, shift = scale_shift
            x = x * (scale + 1) + shift
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
        self.shortcut = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

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
            self.conv = nn.ConvTranspose3d(channels, channels, (1, 4, 4), (1, 2, 2), (0, 1, 1))
        else:
            self.conv = nn.Conv3d(channels, channels, (1, 3, 3), padding=(0, 1, 1), padding_mode=padding_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "nearest":
            x = F.interpolate(x, scale_factor=(1, 2, 2), mode="nearest")
        return self.conv(x)


class Downsample(nn.Module):
    """x2 spatial down-sampling with a (1, 4, 4) stride-(1, 2, 2) convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv3d(channels, channels, (1, 4, 4), (1, 2, 2), (0, 1, 1))

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
