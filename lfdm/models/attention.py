"""Attention layers of the space-time U-Net (`FlowUNet3D`), written for checkpoint parity with the paper's model.

Every layer takes and returns videos `(batch, channels, frames, height, width)`. Notation, as in LFDM (Ni et al.,
CVPR 2023, Sec. 3.2) and the video-diffusion U-Net it builds on: spatial attention mixes the pixels of one frame,
temporal attention mixes the frames of one pixel; position in time enters through a rotary embedding of the
queries and keys plus a T5-style relative position bias added to the attention logits.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

ROTARY_THETA = 10000.0
RELATIVE_POSITION_BUCKETS = 32
RELATIVE_POSITION_MAX_DISTANCE = 32


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channel axis of a video (biased variance, gain `gamma`, no bias)."""

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = torch.var(x, dim=1, unbiased=False, keepdim=True)
        mean = torch.mean(x, dim=1, keepdim=True)
        return (x - mean) / (var + self.eps).sqrt() * self.gamma


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the first `dim` features, pairs interleaved (x0, x1), (x2, x3), ...

    `forward(num_frames)` gives the angle table (frames, dim) that `apply_rotary` uses. The inverse frequencies
    `1 / theta^(2i / dim)` are a fixed, non-persistent buffer: they follow the module across devices but are not
    saved (the authors' checkpoints store a copy per temporal attention; `lfdm.convert` checks those copies).
    """

    def __init__(self, dim: int, theta: float = ROTARY_THETA):
        super().__init__()
        inverse_frequencies = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("inverse_frequencies", inverse_frequencies, persistent=False)

    def forward(self, num_frames: int) -> torch.Tensor:
        positions = torch.arange(num_frames, device=self.inverse_frequencies.device).float()
        angles = positions[:, None] * self.inverse_frequencies[None, :]  # (f, dim/2)
        return angles.repeat_interleave(2, dim=-1)  # (f, dim): each angle used by one interleaved pair


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """(..., (d 2)) pairs (a, b) -> (-b, a)."""
    pairs = rearrange(x, "... (d r) -> ... d r", r=2)
    first, second = pairs.unbind(dim=-1)
    return rearrange(torch.stack((-second, first), dim=-1), "... d r -> ... (d r)")


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first `angles.shape[-1]` features of x (..., frames, head_dim) by angles (frames, rot_dim)."""
    rot_dim = angles.shape[-1]
    angles = angles.to(x.dtype)
    rotated, rest = x[..., :rot_dim], x[..., rot_dim:]
    rotated = rotated * angles.cos() + _rotate_pairs(rotated) * angles.sin()
    return torch.cat((rotated, rest), dim=-1)


class RelativePositionBias(nn.Module):
    """T5 relative position bias: a learned logit offset per head and bucket of the frame offset j - i.

    Buckets (bidirectional): half the buckets per direction; offsets below a quarter of the buckets get one bucket
    each, larger ones share log-spaced buckets up to `max_distance`, beyond which the last bucket is used.
    `forward(num_frames)` -> (heads, frames, frames).
    """

    def __init__(
        self,
        heads: int,
        num_buckets: int = RELATIVE_POSITION_BUCKETS,
        max_distance: int = RELATIVE_POSITION_MAX_DISTANCE,
    ):
        super().__init__()
        self.num_buckets = num_buckets
        self.max_distance = max_distance
        self.embedding = nn.Embedding(num_buckets, heads)

    def bucket(self, relative_position: torch.Tensor) -> torch.Tensor:
        """relative_position (key index - query index, int64) -> bucket index (int64)."""
        half = self.num_buckets // 2
        distance = -relative_position
        bucket = (distance < 0).long() * half  # keys after the query use the upper half
        distance = distance.abs()
        exact = half // 2
        log_ratio = torch.log(distance.float() / exact) / math.log(self.max_distance / exact)
        far = exact + (log_ratio * (half - exact)).long()
        far = torch.clamp(far, max=half - 1)
        return bucket + torch.where(distance < exact, distance, far)

    def forward(self, num_frames: int) -> torch.Tensor:
        positions = torch.arange(num_frames, dtype=torch.long, device=self.embedding.weight.device)
        relative = positions[None, :] - positions[:, None]  # (i, j) -> j - i
        bias = self.embedding(self.bucket(relative))  # (i, j, heads)
        return rearrange(bias, "i j h -> h i j")


class TemporalAttention(nn.Module):
    """Multi-head attention across frames, separately for every pixel, with rotary embedding and position bias.

    forward(x (b, c, f, h, w), position_bias (heads, f, f), rotary_angles (f, rot_dim)) -> (b, c, f, h, w).
    """

    def __init__(self, channels: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Linear(channels, hidden * 3, bias=False)
        self.to_out = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor, rotary_angles: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tokens = rearrange(x, "b c f h w -> (b h w) f c")  # one sequence of frames per pixel
        q, k, v = (
            rearrange(part, "n f (heads d) -> n heads f d", heads=self.heads)
            for part in self.to_qkv(tokens).chunk(3, dim=-1)
        )
        # Scale before the rotation, as the paper's model does, so the logits round the same way.
        q = apply_rotary(q * self.scale, rotary_angles)
        k = apply_rotary(k, rotary_angles)
        # A 4-D query and a mask expanded to it (a view) let PyTorch pick its fused CPU/GPU kernels.
        mask = position_bias.to(q.dtype).expand(q.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0)
        out = self.to_out(rearrange(out, "n heads f d -> n f (heads d)"))
        return rearrange(out, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


class SpatialAttention(nn.Module):
    """Full multi-head attention across the pixels of each frame (used once, at the lowest resolution).

    forward(x (b, c, f, h, w)) -> (b, c, f, h, w).
    """

    def __init__(self, channels: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Linear(channels, hidden * 3, bias=False)
        self.to_out = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        tokens = rearrange(x, "b c f h w -> (b f) (h w) c")  # one sequence of pixels per frame
        q, k, v = (
            rearrange(part, "n p (heads d) -> n heads p d", heads=self.heads)
            for part in self.to_qkv(tokens).chunk(3, dim=-1)
        )
        out = F.scaled_dot_product_attention(q * self.scale, k, v, scale=1.0)
        out = self.to_out(rearrange(out, "n heads p d -> n p (heads d)"))
        return rearrange(out, "(b f) (h w) c -> b c f h w", b=b, h=h, w=w)


class SpatialLinearAttention(nn.Module):
    """Linear attention across the pixels of each frame (Shen et al. 2021): cost linear in the number of pixels.

    Queries are normalised by a softmax over their features, keys by a softmax over the pixels; the output is
    `context^T q` with `context = k v^T` per head. forward(x (b, c, f, h, w)) -> (b, c, f, h, w).
    """

    def __init__(self, channels: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.scale = dim_head**-0.5
        hidden = heads * dim_head
        self.to_qkv = nn.Conv2d(channels, hidden * 3, 1, bias=False)
        self.to_out = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, h, w = x.shape
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        q, k, v = (
            rearrange(part, "n (heads d) x y -> n heads d (x y)", heads=self.heads)
            for part in self.to_qkv(frames).chunk(3, dim=1)
        )
        q = q.softmax(dim=-2) * self.scale
        k = k.softmax(dim=-1)
        context = torch.einsum("n h d p, n h e p -> n h d e", k, v)
        out = torch.einsum("n h d e, n h d p -> n h e p", context, q)
        out = self.to_out(rearrange(out, "n heads e (x y) -> n (heads e) x y", x=h, y=w))
        return rearrange(out, "(b f) c h w -> b c f h w", b=b)


class PreNormResidual(nn.Module):
    """x + attention(ChannelLayerNorm(x)); keyword arguments go to the attention."""

    def __init__(self, channels: int, attention: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.attention = attention

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.attention(self.norm(x), **kwargs) + x
