"""Layers shared by the networks of the latent flow autoencoder (MRAA's building blocks).

Sub-module names (`conv`, `norm`, `down_blocks`, `up_blocks`, ...) follow the authors' checkpoints, so a released
state dict loads without renaming inside a network. BatchNorm is the ordinary `nn.BatchNorm2d` (the official
synchronised BatchNorm has the same keys and, on one device, the same numerics).

Sampling conventions (kept for checkpoint parity, see `coordinate_grid` and `warp`): grids use pixel-centre
coordinates `2 * i / (n - 1) - 1`, while every `grid_sample` / bilinear `interpolate` uses `align_corners=False`.
So the identity grid is not an exact identity warp (a scale of n / (n - 1) plus half a pixel); trained weights
absorb this, so it must stay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lfdm.latents import identity_grid

# --- coordinates and warping -------------------------------------------------------------------------------------


coordinate_grid = identity_grid  # one home for the pixel-centre grid: lfdm.latents


def resize_flow(flow: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a sampling grid (B, h, w, 2) to (B, *size, 2); unchanged when already that size."""
    if tuple(flow.shape[1:3]) == tuple(size):
        return flow
    channels_first = rearrange(flow, "b h w c -> b c h w")
    resized = F.interpolate(channels_first, size=size, mode="bilinear", align_corners=False)
    return rearrange(resized, "b c h w -> b h w c")


def resize_map(occlusion: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a map (B, C, h, w) to (B, C, *size); unchanged when already that size."""
    if tuple(occlusion.shape[2:]) == tuple(size):
        return occlusion
    return F.interpolate(occlusion, size=size, mode="bilinear", align_corners=False)


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """`x` in float32 when it is in a lower precision (bfloat16, float16), else unchanged.

    A batch-repeated view (stride 0 along the batch, as `LatentFlowAutoencoder.decode` repeats one reference's
    features per frame) converts its one copy and stays a view, instead of materialising every repeat.
    """
    exact = torch.promote_types(x.dtype, torch.float32)
    if x.dtype == exact:
        return x
    if x.ndim > 0 and x.shape[0] > 1 and x.stride(0) == 0:
        return x[:1].to(exact).expand_as(x)
    return x.to(exact)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp `image` (B, C, H, W) with the absolute sampling grid `flow` (B, H', W', 2) in [-1, 1].

    The flow is resized to the image first when their sizes differ. Bilinear, zero padding, `align_corners=False`.
    Runs in at least float32 with autocast off and returns that precision: a bfloat16 grid is off by up to 1/64
    of the image, and torch's CPU bfloat16 `grid_sample` of channels-last, batch-repeated features writes NaN
    into part of its output (seen with torch 2.13 at 32 channels, 64x64). Callers cast the result back to their
    network's dtype where they need to.
    """
    with torch.autocast(image.device.type, enabled=False):
        flow = resize_flow(at_least_float32(flow), tuple(image.shape[2:]))
        return F.grid_sample(at_least_float32(image), flow, mode="bilinear", padding_mode="zeros", align_corners=False)


def region_gaussians(shift: torch.Tensor, covar: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Unnormalised Gaussians exp(-(z - mu)^T covar^-1 (z - mu) / 2) on the (height, width) grid.

    shift (B, K, 2) (x, y) in [-1, 1], covar (B, K, 2, 2) -> (B, K, height, width) in (0, 1].
    """
    batch, regions = shift.shape[:2]
    grid = coordinate_grid(height, width, device=shift.device, dtype=shift.dtype)
    grid = grid.expand(batch, regions, height, width, 2)
    centred = grid - shift.view(batch, regions, 1, 1, 2)  # (B, K, h, w, 2)
    covar_inverse = torch.inverse(covar).view(batch, regions, 1, 1, 2, 2)
    # (B, K, h, w, 1, 2) @ (B, K, 1, 1, 2, 2) @ (B, K, h, w, 2, 1): the same matmul shapes as the authors' code,
    # so the tiny dot products round identically.
    mahalanobis = torch.matmul(torch.matmul(centred.unsqueeze(-2), covar_inverse), centred.unsqueeze(-1))
    return torch.exp(-0.5 * mahalanobis.sum(dim=(-1, -2)))


# --- convolution blocks --------------------------------------------------------------------------------------------


class SameBlock2d(nn.Module):
    """conv -> BatchNorm -> ReLU at the same resolution."""

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel_size, padding=padding)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class DownBlock2d(SameBlock2d):
    """conv3x3 -> BatchNorm -> ReLU -> 2x2 average pooling: (B, C_in, H, W) -> (B, C_out, H/2, W/2)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(super().forward(x), kernel_size=2)


def nearest_up_conv_weight(weight: torch.Tensor) -> torch.Tensor:
    """The stride-2 transposed-convolution kernel equal to nearest x2 up-sampling then a 3x3 convolution (padding 1).

    weight (C_out, C_in, 3, 3) -> (C_in, C_out, 4, 4). Along each axis, output pixel 2i + a reads up-sampled pixels
    2i + a - 1 .. 2i + a + 1, which are input pixels i - 1, i, i + 1 with the 3x3 taps that land on the same input
    pixel summed: the four 1-D taps are [w2, w1 + w2, w0 + w1, w0]. 16 multiplications per input pixel instead of
    36, and no up-sampled copy. Exact up to float rounding.
    """
    combine = weight.new_tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]])  # (4 taps, 3 taps)
    return torch.einsum("ak,oikl,bl->ioab", combine, weight, combine)


class UpBlock2d(SameBlock2d):
    """nearest x2 up-sampling -> conv3x3 -> BatchNorm -> ReLU: (B, C_in, H, W) -> (B, C_out, 2H, 2W).

    The up-sampling and the 3x3 convolution run as one transposed convolution (`nearest_up_conv_weight`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if conv.kernel_size != (3, 3) or conv.padding != (1, 1):
            return super().forward(F.interpolate(x, scale_factor=2, mode="nearest"))
        x = F.conv_transpose2d(x, nearest_up_conv_weight(conv.weight), conv.bias, stride=2, padding=1)
        return F.relu(self.norm(x))


class ResBlock2d(nn.Module):
    """Pre-activation residual block: x + conv(ReLU(BN(conv(ReLU(BN(x)))))), channels unchanged."""

    def __init__(self, channels: int, *, kernel_size: int = 3, padding: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=kernel_size, padding=padding)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size=kernel_size, padding=padding)
        self.norm1 = nn.BatchNorm2d(channels)
        self.norm2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return out + x


def hourglass_width(block_expansion: int, max_features: int, level: int) -> int:
    """Channels after `level` down-samplings of an hourglass: min(max_features, block_expansion * 2**level)."""
    return min(max_features, block_expansion * 2**level)


class HourglassEncoder(nn.Module):
    """`num_blocks` DownBlocks; returns every resolution, input first: [x, x/2, ..., x/2**num_blocks]."""

    def __init__(self, *, block_expansion: int, in_channels: int, num_blocks: int, max_features: int):
        super().__init__()
        widths = [in_channels] + [hourglass_width(block_expansion, max_features, i + 1) for i in range(num_blocks)]
        self.down_blocks = nn.ModuleList(DownBlock2d(widths[i], widths[i + 1]) for i in range(num_blocks))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = [x]
        for block in self.down_blocks:
            outputs.append(block(outputs[-1]))
        return outputs


class HourglassDecoder(nn.Module):
    """UpBlocks from the coarsest encoder output back up, each followed by concatenation with the matching skip."""

    def __init__(self, *, block_expansion: int, in_channels: int, num_blocks: int, max_features: int):
        super().__init__()
        blocks = []
        for level in reversed(range(num_blocks)):
            # the coarsest block sees the encoder output alone; the others see [up-sampled, skip] concatenated
            factor = 1 if level == num_blocks - 1 else 2
            in_width = factor * hourglass_width(block_expansion, max_features, level + 1)
            blocks.append(UpBlock2d(in_width, hourglass_width(block_expansion, max_features, level)))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_channels = block_expansion + in_channels

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        out = features[-1]
        for block, skip in zip(self.up_blocks, reversed(features[:-1]), strict=True):
            out = torch.cat([block(out), skip], dim=1)
        return out


class Hourglass(nn.Module):
    """U-Net (B, C, H, W) -> (B, block_expansion + C, H, W); H and W must be divisible by 2**num_blocks."""

    def __init__(self, *, block_expansion: int, in_channels: int, num_blocks: int, max_features: int):
        super().__init__()
        sizes = dict(block_expansion=block_expansion, in_channels=in_channels, num_blocks=num_blocks)
        self.encoder = HourglassEncoder(**sizes, max_features=max_features)
        self.decoder = HourglassDecoder(**sizes, max_features=max_features)
        self.out_channels = self.decoder.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class AntiAliasDownsample(nn.Module):
    """Gaussian blur then stride subsampling: (B, C, H, W) -> (B, C, H * scale, W * scale).

    sigma = (1 / scale - 1) / 2, kernel 2 * round(4 * sigma) + 1 (13x13 for scale 0.25), zero padding, then every
    (1 / scale)-th pixel starting at 0. The kernel is a fixed buffer `weight` (C, 1, k, k) stored in the state dict,
    as in the authors' checkpoints.
    """

    def __init__(self, channels: int, scale: float):
        super().__init__()
        if not 0 < scale <= 1 or abs(round(1 / scale) * scale - 1) > 1e-6:
            raise ValueError(f"scale must be 1 / n for an integer n >= 1 (0.25, 0.5, 1); got {scale}.")
        self.stride = round(1 / scale)
        sigma = (1 / scale - 1) / 2
        kernel_size = 2 * round(sigma * 4) + 1
        self.padding = kernel_size // 2
        offsets = torch.arange(kernel_size, dtype=torch.float32) - (kernel_size - 1) / 2
        gaussian = torch.exp(-(offsets**2) / (2 * sigma**2)) if sigma > 0 else torch.ones(1)
        kernel = rearrange(gaussian, "i -> i 1") * rearrange(gaussian, "j -> 1 j")
        kernel = kernel / kernel.sum()
        self.register_buffer("weight", kernel.expand(channels, 1, *kernel.shape).contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x
        # In float32 with autocast off, whatever the network's precision: on CPUs with AMX-BF16, oneDNN's bfloat16
        # depthwise kernel (brdgmm) can spend many minutes generating its code for kernels this large (a 29x29
        # blur under bfloat16 autocast had not returned after minutes). A fixed low-pass filter costs little in float32.
        with torch.autocast(x.device.type, enabled=False):
            exact = at_least_float32(x)
            blurred = F.conv2d(F.pad(exact, [self.padding] * 4), self.weight.to(exact.dtype), groups=x.shape[1])
        return blurred[:, :, :: self.stride, :: self.stride].to(x.dtype)
