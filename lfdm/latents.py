"""The one place where flows and occlusion maps change layout.

Inside the diffusion model a video of flows is one tensor `(B, 3, F, h, w)` with channels
`[flow_x, flow_y, 2 * occlusion - 1]` (paper: the latent x_0 that the DM generates), all in about [-1, 1]. With
`residual=True` (the authors' `use_residual_flow`) the flow channels hold the displacement from `identity_grid`
instead of the absolute grid, so a still face is all zeros.
Everywhere else a flow is an absolute backward sampling grid `(..., h, w, 2)` in [-1, 1], x first (the layout
`grid_sample` takes), and an occlusion map is `(..., h, w)` in [0, 1], 1 = visible.
"""

from __future__ import annotations

import torch
from einops import rearrange


def flows_to_latents(flows: torch.Tensor, occlusions: torch.Tensor, *, residual: bool = False) -> torch.Tensor:
    """flows (B, F, h, w, 2) and occlusions (B, F, h, w) in [0, 1] -> latents (B, 3, F, h, w)."""
    if residual:
        flows = flows - identity_grid(*flows.shape[-3:-1], device=flows.device, dtype=flows.dtype)
    grid = rearrange(flows, "b f h w c -> b c f h w")
    occlusion = rearrange(occlusions, "b f h w -> b 1 f h w") * 2 - 1
    return torch.cat([grid, occlusion], dim=1)


def latents_to_flows(latents: torch.Tensor, *, residual: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """latents (B, 3, F, h, w) -> flows (B, F, h, w, 2), occlusions (B, F, h, w) in [0, 1] (clamped)."""
    flows = rearrange(latents[:, :2], "b c f h w -> b f h w c")
    if residual:
        flows = flows + identity_grid(*flows.shape[-3:-1], device=flows.device, dtype=flows.dtype)
    occlusions = ((latents[:, 2] + 1) / 2).clamp(0, 1)
    return flows, occlusions


def identity_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The identity sampling grid (h, w, 2), x first, over pixel centres in [-1, 1] (MRAA's convention).

    Computed as `2 * (i / (n - 1)) - 1`, the authors' formula: `torch.linspace` differs from it by one float32 ulp
    at some sizes, which would break bit-exact parity with the released models.
    """
    xs = 2 * (torch.arange(width, device=device, dtype=dtype) / (width - 1)) - 1
    ys = 2 * (torch.arange(height, device=device, dtype=dtype) / (height - 1)) - 1
    grid_x = rearrange(xs, "w -> 1 w").expand(height, width)
    grid_y = rearrange(ys, "h -> h 1").expand(height, width)
    return torch.stack([grid_x, grid_y], dim=-1)


def resting_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """The grid (h, w, 2) that leaves an image where it is under `grid_sample(align_corners=False)`.

    The LFAE warps with `align_corners=False` while `identity_grid` uses MRAA's pixel-centre convention, so the
    "identity" grid actually shrinks the image by n / (n - 1) (6 % at a 16-px latent) and a trained LFAE predicts
    about this grid for a still face. Pictures measure motion from here: `(2 i + 1) / n - 1`.
    """
    xs = (2 * torch.arange(width, device=device, dtype=dtype) + 1) / width - 1
    ys = (2 * torch.arange(height, device=device, dtype=dtype) + 1) / height - 1
    grid_x = rearrange(xs, "w -> 1 w").expand(height, width)
    grid_y = rearrange(ys, "h -> h 1").expand(height, width)
    return torch.stack([grid_x, grid_y], dim=-1)
