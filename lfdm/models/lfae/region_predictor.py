"""Region predictor: K soft regions of an image, each with a centre and an affine shape (MRAA, PCA variant).

State-dict keys are the authors' (`predictor.*`, `regions.*`, `down.weight`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.utils import BaseOutput
from einops import rearrange
from torch import nn

from lfdm.models.blocks import AntiAliasDownsample, Hourglass, coordinate_grid


@dataclass
class RegionParams(BaseOutput):
    """The regions of a batch of images; K = number of regions, (h', w') = heat-map size.

    shift (B, K, 2): region centres (x, y) in [-1, 1].
    covar (B, K, 2, 2): heat-map weighted covariance of the coordinates, (x, y) order.
    affine (B, K, 2, 2): region shape U diag(sqrt(S)) from the SVD covar = U S V^T.
    heatmap (B, K, h', w'): softmax over all pixels of each region's logits / temperature; sums to 1 per region.
    u (B, K, 2, 2) and d (B, K, 2, 2): the SVD factors U and diag(sqrt(S)) (affine = u @ d).
    """

    shift: torch.Tensor
    covar: torch.Tensor
    affine: torch.Tensor
    heatmap: torch.Tensor
    u: torch.Tensor
    d: torch.Tensor

    def to(self, dtype: torch.dtype) -> RegionParams:
        """The same regions with every tensor in `dtype`."""
        return RegionParams(**{name: tensor.to(dtype) for name, tensor in self.items()})


def covariance_square_root(covar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """covar (..., 2, 2) -> (U, diag(sqrt(S))) from its SVD, both (..., 2, 2), on the input's device and dtype.

    The SVD runs on the CPU in at least float32, as in the authors' code: a GPU or half-precision SVD can return
    other signs for U, and the released weights were trained with the CPU result (the signs partly cancel in the
    region motion, but not in `affine` itself).
    """
    work_dtype = torch.promote_types(covar.dtype, torch.float32)
    u, s, _ = torch.linalg.svd(covar.to(device="cpu", dtype=work_dtype))
    d = torch.diag_embed(s**0.5)
    return u.to(device=covar.device, dtype=covar.dtype), d.to(device=covar.device, dtype=covar.dtype)


class RegionPredictor(nn.Module):
    """image (B, C, H, W) in [0, 1] -> `RegionParams` with heat maps of size H * scale_factor - 6 + 2 * pad.

    Pipeline: anti-aliased down-sampling by `scale_factor` -> hourglass -> 7x7 conv (padding `pad`: 3 keeps the
    size, 0 shrinks it by 6 as in the MHAD/NATOPS checkpoints) -> one logit map per region -> softmax over pixels
    -> centre (mean) and covariance of the coordinates -> affine shape from the covariance's SVD.
    """

    def __init__(
        self,
        *,
        num_regions: int,
        num_channels: int,
        block_expansion: int,
        max_features: int,
        num_blocks: int,
        temperature: float,
        scale_factor: float,
        pad: int,
    ):
        super().__init__()
        self.temperature = temperature
        self.predictor = Hourglass(
            block_expansion=block_expansion, in_channels=num_channels, num_blocks=num_blocks, max_features=max_features
        )
        self.regions = nn.Conv2d(self.predictor.out_channels, num_regions, kernel_size=7, padding=pad)
        # the authors' module has no `down` at scale 1, so neither does ours (keeps the key sets equal)
        self.down = AntiAliasDownsample(num_channels, scale_factor) if scale_factor != 1 else None

    def forward(self, image: torch.Tensor) -> RegionParams:
        """image (B, C, H, W) in [0, 1] -> RegionParams (see its docstring for the shapes), in the image's dtype."""
        small = self.down(image) if self.down is not None else image
        logits = self.regions(self.predictor(small))  # (B, K, h', w')
        # The statistics are coordinates: in bfloat16 (autocast) a region's covariance cancels to noise and
        # training diverges, so they run in at least float32 with autocast off (a no-op for a float32 model).
        with torch.autocast(image.device.type, enabled=False):
            regions = self.statistics(logits.to(torch.promote_types(logits.dtype, torch.float32)))
        return regions.to(image.dtype)

    def statistics(self, logits: torch.Tensor) -> RegionParams:
        """Region logits (B, K, h', w') -> RegionParams: softmax heat maps, their centres, covariances and shapes."""
        batch, regions, height, width = logits.shape
        heatmap = F.softmax(logits.view(batch, regions, -1) / self.temperature, dim=2).view(logits.shape)

        # heat-map weighted mean and covariance of the pixel coordinates (paper: MRAA eq. 2)
        weights = heatmap.unsqueeze(-1)  # (B, K, h', w', 1)
        grid = coordinate_grid(height, width, device=logits.device, dtype=heatmap.dtype)[None, None]
        shift = (weights * grid).sum(dim=(2, 3))  # (B, K, 2)
        centred = grid - shift[:, :, None, None, :]  # (B, K, h', w', 2)
        outer = torch.matmul(centred.unsqueeze(-1), centred.unsqueeze(-2))  # (B, K, h', w', 2, 2)
        covar = (outer * weights.unsqueeze(-1)).sum(dim=(2, 3))  # (B, K, 2, 2)

        u, d = covariance_square_root(rearrange(covar, "b k i j -> (b k) i j"))
        affine = torch.matmul(u, d).view(covar.shape)
        u, d = (rearrange(t, "(b k) i j -> b k i j", b=batch) for t in (u, d))
        return RegionParams(shift=shift, covar=covar, affine=affine, heatmap=heatmap, u=u, d=d)
