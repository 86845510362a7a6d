"""Attention layers of the space-time U-Net (`FlowUNet3D`), written for checkpoint parity with the paper's model.

Every layer takes and returns videos `(batch, channels, frames, height, width)`. Notation, as in LFDM (Ni et al.,
CVPR 2023, Sec. 3.2) and the video-diffusion U-Net it builds on: spatial attention mixes the pixels of one frame,
temporal attention mixes the frames of one pixel; position in time enters through a rotary embedding of the
queries and keys plus a T5-style relative position bias added to the attention logits.

Speed: the layers read their tokens as views of channels-last videos (physically (b, f, h, w, c), see
`lfdm.models.unet3d_blocks`), project them with one matmul over the channels, and hand strided views to
`scaled_dot_product_attention`; their outputs are channels-last videos again.
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
        # One fused layer_norm over the channels, the last axis in memory of a channels-last video.
        normed = F.layer_norm(rearrange(x, "b c f h w -> b f h w c"), x.shape[1:2], self.gamma.flatten(), eps=self.eps)
        return rearrange(normed, "b f h w c -> b c f h w")


class RotaryEmbedding(nn.Module):
    """Rotary position embedding over the first `dim` features, pairs interleaved (x0, x1), (x2, x3), ...

    `forward(num_frames)` gives the angle table (frames, dim) that `apply_rotary` uses. The inverse frequencies
    `1 / theta^(2i / dim)` are a fixed, non-persistent buffer: they follow the module across devices but are not
    saved (the authors' checkpoints store a copy per temporal attention; `lfdm.released_checkpoints` checks those
    copies).
    """

    def __init__(self, dim: int, theta: float = ROTARY_THETA):
        super().__init__()
        inverse_frequencies = 1.0 / (theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim))
        self.register_buffer("inverse_frequencies", inverse_frequencies, persistent=False)

    def forward(self, num_frames: int) -> torch.Tensor:
        positions = torch.arange(num_frames, device=self.inverse_frequencies.device).float()
        angles = positions[:, None] * self.inverse_frequencies[None, :]  # (f, dim/2)
        return angles.repeat_interleave(2, dim=-1)  # (f, dim): each angle used by one interleaved pair


def apply_rotary(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate the first `angles.shape[-1]` features of x (..., frames, head_dim) by angles (frames, rot_dim).

    Each interleaved pair (a, b) turns by its angle: (a cos - b sin, b cos + a sin). In float32/64 this is one
    complex multiplication per pair, a single pass over x that also makes the strided views of a fused qkv
    projection contiguous.
    """
    rot_dim = angles.shape[-1]
    rotated, rest = x[..., :rot_dim], x[..., rot_dim:]
    half_angles = angles[:, ::2].float()  # (frames, rot_dim / 2): one angle per pair
    if x.dtype in (torch.float32, torch.float64):
        pairs = torch.view_as_complex(rearrange(rotated, "... (d r) -> ... d r", r=2))
        turned = pairs * torch.polar(torch.ones_like(half_angles), half_angles).to(pairs.dtype)
        rotated = rearrange(torch.view_as_real(turned), "... d r -> ... (d r)")
    else:  # no complex type for bfloat16: the same rotation written out
        cos, sin = half_angles.cos().to(x.dtype), half_angles.sin().to(x.dtype)
        first, second = rearrange(rotated, "... (d r) -> ... d r", r=2).unbind(dim=-1)
        turned = torch.stack((first * cos - second * sin, second * cos + first * sin), dim=-1)
        rotated = rearrange(turned, "... d r -> ... (d r)")
    return torch.cat((rotated, rest), dim=-1) if rest.shape[-1] else rotated


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
        q, k, v = self._rotated_qkv(x, rotary_angles)  # each (b*h*w, heads, f, d)
        # A 4-D query and a mask expanded to it (a view) let PyTorch pick its fused CPU/GPU kernels.
        mask = position_bias.to(q.dtype).expand(q.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        out = self.to_out(rearrange(out, "n heads f d -> n f (heads d)"))  # (b*h*w, f, c)
        out = rearrange(out, "(b h w) f c -> b c f h w", b=b, h=h, w=w)
        return out.contiguous(memory_format=torch.channels_last_3d)

    def _rotated_qkv(self, x: torch.Tensor, rotary_angles: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Queries and keys with the rotary embedding applied, and values: (b*h*w, heads, f, d) each.

        Rotating the projection weights once per frame costs f * c * 3 * heads * d, rotating the queries and keys
        2 * b*h*w * f * heads * d: the first wins when a frame has many pixels for its channels (32x32 and 16x16
        at the paper's size), the second at the narrow, wide levels (8x8 and 4x4).
        """
        b, c, f, h, w = x.shape
        if 2 * b * h * w > 3 * c:
            tokens = rearrange(x, "b c f h w -> f (b h w) c")  # a view of a channels-last video when b = 1
            qkv = torch.bmm(tokens, self.rotated_projection(rotary_angles))  # (f, b*h*w, 3 * heads * d)
            # one sequence of frames per pixel: strided views of the projection
            return rearrange(qkv, "f n (three heads d) -> three n heads f d", three=3, heads=self.heads).unbind(0)
        qkv = self.to_qkv(rearrange(x, "b c f h w -> b f h w c"))  # (b, f, h, w, 3 * heads * d)
        q, k, v = rearrange(qkv, "b f h w (three heads d) -> three (b h w) heads f d", three=3, heads=self.heads)
        return apply_rotary(q, rotary_angles), apply_rotary(k, rotary_angles), v

    def rotated_projection(self, rotary_angles: torch.Tensor) -> torch.Tensor:
        """The qkv weights per frame with the rotary embedding folded in: (f, channels, 3 * heads * d).

        The rotation of frame i is linear, so rotate(W_q x_i) = rotate_i(W_q) x_i: rotating the (small) weights
        once per frame replaces rotating every query and key. Exact up to float rounding.
        """
        frames = rotary_angles.shape[0]
        weight = rearrange(self.to_qkv.weight, "(three heads d) c -> three heads c 1 d", three=3, heads=self.heads)
        weight = weight.contiguous().expand(-1, -1, -1, frames, -1)
        query, key = (apply_rotary(part, rotary_angles) for part in weight[:2])
        weight = torch.stack((query, key, weight[2]))  # (3, heads, c, f, d)
        return rearrange(weight, "three heads c f d -> f c (three heads d)")


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
        qkv = self.to_qkv(rearrange(x, "b c f h w -> (b f) (h w) c"))  # one sequence of pixels per frame
        q, k, v = rearrange(qkv, "n p (three heads d) -> three n heads p d", three=3, heads=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = self.to_out(rearrange(out, "n heads p d -> n p (heads d)"))
        return rearrange(out, "(b f) (h w) c -> b c f h w", b=b, h=h, w=w)


class SpatialLinearAttention(nn.Module):
    """Linear attention across the pixels of each frame (Shen et al. 2021): cost linear in the number of pixels.

    Queries are normalised by a softmax over their features, keys by a softmax over the pixels; the output is
    `context^T q` with `context = k v^T` per head, then the 1x1 output convolution. forward(x (b, c, f, h, w)) ->
    (b, c, f, h, w).
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
        tokens = rearrange(x, "b c f h w -> (b f) (h w) c")  # pixels of each frame; a view of a channels-last video
        qkv = F.linear(tokens, self.to_qkv.weight.flatten(1))  # the 1x1 convolution as one matmul
        q, k, v = rearrange(qkv, "n p (three heads d) -> three n heads p d", three=3, heads=self.heads)
        q = rearrange(q.softmax(dim=-1), "n heads p d -> n p (heads d)")  # softmax over the features of each head
        k = k.softmax(dim=-2)  # over the pixels
        context = torch.einsum("n h p d, n h p e -> n h d e", k, v)
        # to_out(scale * q context) = q (scale * context to_out): fold the context into the output projection, a
        # (heads*d, c) matrix per frame, instead of materialising the (pixels, heads*d) attention output.
        weight = rearrange(self.to_out.weight.flatten(1), "c (heads e) -> heads e c", heads=self.heads)
        mixing = torch.einsum("n h d e, h e c -> n h d c", context, weight) * self.scale
        out = torch.baddbmm(self.to_out.bias, q, rearrange(mixing, "n heads d c -> n (heads d) c"))
        return rearrange(out, "(b f) (h w) c -> b c f h w", b=b, h=h, w=w)


class PreNormResidual(nn.Module):
    """x + attention(ChannelLayerNorm(x)); keyword arguments go to the attention."""

    def __init__(self, channels: int, attention: nn.Module):
        super().__init__()
        self.norm = ChannelLayerNorm(channels)
        self.attention = attention

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.attention(self.norm(x), **kwargs) + x
