"""Pixelwise flow predictor: combines region and background motions into a dense flow and an occlusion map.

State-dict keys are the authors' (`hourglass.*`, `mask.*`, `occlusion.*`, `down.weight`); it lives inside the
generator as `generator.pixelwise_flow_predictor`, as in the checkpoints.

Notation (MRAA, Siarohin et al. 2021, sec. 3): K regions, region k of the reference has centre mu_k^S and shape
A_k^S, of the driving frame mu_k^D and A_k^D; the motion of region k maps a driving-frame point z to
A_k (z - mu_k^D) + mu_k^S with A_k = A_k^S (A_k^D)^-1 (eq. 3). Motion 0 is the background affine.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from einops import rearrange, repeat
from torch import nn

from lfdm.models.blocks import AntiAliasDownsample, Hourglass, coordinate_grid, region_gaussians
from lfdm.models.lfae.region_predictor import RegionParams

RESIDUAL_FLOW_SCALE = 0.01  # output scale of the optional residual flow head (see `PixelwiseFlowPredictor`)


@dataclass
class PixelwiseFlow(BaseOutput):
    """Output of `PixelwiseFlowPredictor`; K = regions, (h, w) = latent size, motion 0 = background.

    flow (B, h, w, 2): absolute backward sampling grid, (x, y) in about [-1, 1].
    occlusion (B, 1, h, w) in [0, 1], 1 = visible in the reference.
    mask (B, K+1, h, w): softmax weights of the K+1 motions (sum to 1 over dim 1).
    sparse_motion (B, K+1, h, w, 2): one sampling grid per motion.
    deformed_source (B, K+1, C, h, w): the down-sampled reference warped by each motion.
    heatmap_representation (B, K+1, 1, h, w): driving minus reference Gaussians (zeros for the background).
    source_small (B, C, h, w): the down-sampled reference.
    """

    flow: torch.Tensor
    occlusion: torch.Tensor
    mask: torch.Tensor
    sparse_motion: torch.Tensor
    deformed_source: torch.Tensor
    heatmap_representation: torch.Tensor
    source_small: torch.Tensor


class PixelwiseFlowPredictor(nn.Module):
    """reference (B, C, H, W) + both frames' regions + background -> `PixelwiseFlow` at H * scale_factor."""

    def __init__(
        self,
        *,
        num_regions: int,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        scale_factor: float,
        revert_axis_swap: bool,
        residual_flow: bool = False,
    ):
        super().__init__()
        self.num_regions = num_regions
        self.revert_axis_swap = revert_axis_swap
        # per motion: its heat-map difference (1 channel) and the reference deformed by it (C channels)
        in_channels = (num_regions + 1) * (num_channels + 1)
        self.hourglass = Hourglass(
            block_expansion=block_expansion, in_channels=in_channels, num_blocks=num_blocks, max_features=max_features
        )
        self.mask = nn.Conv2d(self.hourglass.out_channels, num_regions + 1, kernel_size=7, padding=3)
        self.occlusion = nn.Conv2d(self.hourglass.out_channels, 1, kernel_size=7, padding=3)
        # optional, not in the paper: a free correction added to the mixture of motions; zero at the start, so a
        # model grown from one without it computes the same flow. Its output is scaled down: Adam moves each of the
        # head's ~4k weights by about the learning rate per step whatever its gradient, which unscaled shifts the
        # flow by up to half the image within the first steps.
        self.residual_flow = None
        if residual_flow:
            self.residual_flow = nn.Conv2d(self.hourglass.out_channels, 2, kernel_size=7, padding=3)
            nn.init.zeros_(self.residual_flow.weight)
            nn.init.zeros_(self.residual_flow.bias)
        self.down = AntiAliasDownsample(num_channels, scale_factor) if scale_factor != 1 else None

    def heatmap_representation(
        self, size: tuple[int, int], driving: RegionParams, reference: RegionParams
    ) -> torch.Tensor:
        """Driving minus reference region Gaussians at `size`, background first: (B, K+1, 1, h, w)."""
        height, width = size
        difference = region_gaussians(driving.shift, driving.covar, height, width) - region_gaussians(
            reference.shift, reference.covar, height, width
        )
        background = difference.new_zeros(difference.shape[0], 1, height, width)
        return torch.cat([background, difference], dim=1).unsqueeze(2)

    def sparse_motion(
        self, size: tuple[int, int], driving: RegionParams, reference: RegionParams, background: torch.Tensor
    ) -> torch.Tensor:
        """One backward sampling grid per motion, background first: (B, K+1, h, w, 2)."""
        height, width = size
        batch, regions = driving.shift.shape[:2]
        identity = coordinate_grid(height, width, device=background.device, dtype=background.dtype)
        identity = identity.view(1, 1, height, width, 2)

        # region motions, MRAA eq. 3: A_k (z - mu_k^D) + mu_k^S
        motion = torch.matmul(reference.affine, torch.inverse(driving.affine))  # (B, K, 2, 2)
        if self.revert_axis_swap:
            # the SVD may swap or flip the axes between the two frames; undo a flip of the first axis
            motion = motion * torch.sign(motion[:, :, 0:1, 0:1])
        # the same (B, K, h, w, 2, 2) @ (B, K, h, w, 2, 1) product as the authors' code, for identical rounding
        motion = repeat(motion, "b k i j -> b k h w i j", h=height, w=width)
        centred = identity - driving.shift.view(batch, regions, 1, 1, 2)
        region_grids = torch.matmul(motion, centred.unsqueeze(-1)).squeeze(-1)
        region_grids = region_grids + reference.shift.view(batch, regions, 1, 1, 2)

        # background: the affine applied to homogeneous coordinates, then back to 2D
        homogeneous = torch.cat([identity, torch.ones_like(identity[..., :1])], dim=-1).expand(batch, 1, -1, -1, -1)
        background_grid = torch.matmul(background.view(batch, 1, 1, 1, 3, 3), homogeneous.unsqueeze(-1)).squeeze(-1)
        background_grid = background_grid[..., :2] / background_grid[..., 2:3]
        return torch.cat([background_grid, region_grids], dim=1)

    def deform_source(self, source_small: torch.Tensor, sparse_motion: torch.Tensor) -> torch.Tensor:
        """source_small (B, C, h, w) warped by each motion (B, K+1, h, w, 2) -> (B, K+1, C, h, w)."""
        motions = sparse_motion.shape[1]
        sources = repeat(source_small, "b c h w -> (b k) c h w", k=motions)
        grids = rearrange(sparse_motion, "b k h w xy -> (b k) h w xy")
        deformed = F.grid_sample(sources, grids, mode="bilinear", padding_mode="zeros", align_corners=False)
        return rearrange(deformed, "(b k) c h w -> b k c h w", k=motions)

    def forward(
        self, reference: torch.Tensor, driving: RegionParams, reference_regions: RegionParams, background: torch.Tensor
    ) -> PixelwiseFlow:
        """reference (B, C, H, W) in [0, 1], regions of both frames, background (B, 3, 3) -> PixelwiseFlow.

        The motions, the deformed sources and the flow are coordinates: they run in at least float32 with autocast
        off (a no-op for a float32 model; bfloat16 grids are off by up to 1/64 of the image) and come back in the
        reference's dtype.
        """
        source_small = self.down(reference) if self.down is not None else reference
        size = tuple(source_small.shape[2:])
        dtype, exact = reference.dtype, torch.promote_types(reference.dtype, torch.float32)
        with torch.autocast(reference.device.type, enabled=False):
            driving, reference_regions = driving.to(exact), reference_regions.to(exact)
            heatmaps = self.heatmap_representation(size, driving, reference_regions)
            sparse_motion = self.sparse_motion(size, driving, reference_regions, background.to(exact))
            deformed_source = self.deform_source(source_small.to(exact), sparse_motion)

        inputs = rearrange(torch.cat([heatmaps, deformed_source], dim=2), "b k c h w -> b (k c) h w")
        features = self.hourglass(inputs.to(dtype))
        mask = F.softmax(self.mask(features), dim=1)  # (B, K+1, h, w)
        with torch.autocast(reference.device.type, enabled=False):
            # weighted sum of the motions, summed over the motion axis in the authors' layout (B, K+1, 2, h, w)
            motions_first = rearrange(sparse_motion, "b k h w xy -> b k xy h w")
            flow = rearrange((motions_first * mask.to(exact).unsqueeze(2)).sum(dim=1), "b xy h w -> b h w xy")
            if self.residual_flow is not None:
                residual = RESIDUAL_FLOW_SCALE * self.residual_flow(features).to(exact)
                flow = flow + rearrange(residual, "b xy h w -> b h w xy")
        flow, mask, sparse_motion = flow.to(dtype), mask.to(dtype), sparse_motion.to(dtype)
        heatmaps, deformed_source = heatmaps.to(dtype), deformed_source.to(dtype)
        occlusion = torch.sigmoid(self.occlusion(features)).to(dtype)
        return PixelwiseFlow(
            flow=flow,
            occlusion=occlusion,
            mask=mask,
            sparse_motion=sparse_motion,
            deformed_source=deformed_source,
            heatmap_representation=heatmaps,
            source_small=source_small,
        )
