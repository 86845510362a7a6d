"""The speed rewrites compute what the plain formulas compute (up to float rounding).

Each test writes the paper's formula out directly and compares it with the layer: the split init convolution,
both ways of applying the rotary embedding in temporal attention, the folded spatial linear attention, the
up-sampling block as one transposed convolution, and the per-frame convolutions in either memory layout.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from einops import rearrange, repeat

import lfdm.models.unet3d_blocks as unet3d_blocks
from lfdm.models.attention import (
    RelativePositionBias,
    RotaryEmbedding,
    SpatialLinearAttention,
    TemporalAttention,
    apply_rotary,
)
from lfdm.models.blocks import UpBlock2d
from lfdm.models.unet3d import FlowUNet3D
from lfdm.models.unet3d_blocks import FrameConv3d

CLOSE = {"atol": 1e-5, "rtol": 1e-5}


def explicit_temporal_attention(attention: TemporalAttention, x, bias, angles):
    """softmax(rot(q) rot(k)^T / sqrt(d) + bias) v per pixel, written out."""
    b, c, f, h, w = x.shape
    tokens = rearrange(x, "b c f h w -> (b h w) f c")
    q, k, v = rearrange(attention.to_qkv(tokens), "n f (three heads d) -> three n heads f d", three=3,
                        heads=attention.heads)  # fmt: skip
    q, k = apply_rotary(q * attention.scale, angles), apply_rotary(k, angles)
    out = (q @ k.transpose(-1, -2) + bias).softmax(dim=-1) @ v
    out = attention.to_out(rearrange(out, "n heads f d -> n f (heads d)"))
    return rearrange(out, "(b h w) f c -> b c f h w", b=b, h=h, w=w)


@pytest.mark.parametrize(
    "channels, size",
    [(8, 8), (64, 2)],  # many pixels per channel: per-frame rotated weights; few: rotated queries and keys
)
def test_temporal_attention_paths_equal_the_formula(channels, size):
    torch.manual_seed(0)
    attention = TemporalAttention(channels, heads=2, dim_head=8)
    frames = 5
    x = torch.randn(2, channels, frames, size, size)
    bias, angles = RelativePositionBias(2)(frames), RotaryEmbedding(8)(frames)
    with torch.no_grad():
        torch.testing.assert_close(attention(x, bias, angles), explicit_temporal_attention(attention, x, bias, angles),
                                   **CLOSE)  # fmt: skip


def test_spatial_linear_attention_equals_the_formula():
    torch.manual_seed(0)
    attention = SpatialLinearAttention(8, heads=2, dim_head=4)
    x = torch.randn(2, 8, 3, 4, 5)
    with torch.no_grad():
        frames = rearrange(x, "b c f h w -> (b f) c h w")
        q, k, v = rearrange(attention.to_qkv(frames), "n (three heads d) x y -> three n heads d (x y)", three=3,
                            heads=2)  # fmt: skip
        q, k = q.softmax(dim=-2) * attention.scale, k.softmax(dim=-1)
        context = torch.einsum("nhdp,nhep->nhde", k, v)
        out = rearrange(torch.einsum("nhde,nhdp->nhep", context, q), "n heads e (x y) -> n (heads e) x y", x=4)
        expected = rearrange(attention.to_out(out), "(b f) c h w -> b c f h w", b=2)
        torch.testing.assert_close(attention(x), expected, **CLOSE)


def test_split_init_convolution_equals_convolving_the_repeated_features():
    torch.manual_seed(0)
    unet = FlowUNet3D(dim=8, dim_mults=(1, 2), feature_channels=6, label_dim=4, attn_heads=2, attn_dim_head=8,
                      spatial_attn_dim_head=8, init_kernel_size=3)  # fmt: skip
    sample, features = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 6, 8, 8)
    with torch.no_grad():
        joined = torch.cat([sample, repeat(features, "b c h w -> b c f h w", f=4)], dim=1)
        expected = F.conv3d(joined, unet.init_conv.weight, unet.init_conv.bias, padding=(0, 1, 1))
        torch.testing.assert_close(unet.initial_convolution(sample, features), expected, **CLOSE)


def test_up_block_equals_nearest_upsampling_then_convolution():
    torch.manual_seed(0)
    block = UpBlock2d(6, 4).eval()
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        expected = F.relu(block.norm(block.conv(F.interpolate(x, scale_factor=2, mode="nearest"))))
        torch.testing.assert_close(block(x), expected, **CLOSE)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect"])
@pytest.mark.parametrize("size", [3, 6])  # 3x3 frames are convolved channels-first, 6x6 channels-last
def test_frame_convolution_equals_conv3d(padding_mode, size):
    torch.manual_seed(0)
    conv = FrameConv3d(4, 5, (1, 3, 3), padding=(0, 1, 1), padding_mode=padding_mode)
    x = torch.randn(2, 4, 3, size, size)
    assert (size * size <= unet3d_blocks.TINY_FRAME_PIXELS) == (size == 3)
    with torch.no_grad():
        expected = torch.nn.Conv3d.forward(conv, x)
        torch.testing.assert_close(conv(x), expected, **CLOSE)


def test_frame_convolution_rejects_temporal_kernels():
    with pytest.raises(ValueError, match="per frame"):
        FrameConv3d(4, 4, (3, 3, 3), padding=1)
