"""Image reconstruction metrics: L1, PSNR and SSIM, one value per image.

All inputs are images `(B, C, H, W)` with values in `[0, data_range]` (lfdm images: [0, 1]). Every function is
differentiable, so training uses the same SSIM as evaluation (`lfdm.training.losses`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Wang et al. 2004, "Image quality assessment: from error visibility to structural similarity": an 11x11 Gaussian
# window with sigma 1.5 and the stabilising constants K1 = 0.01, K2 = 0.03.
SSIM_WINDOW_SIZE = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape or prediction.dim() != 4:
        raise ValueError(
            f"metrics take two image batches of one shape (B, C, H, W); got {tuple(prediction.shape)} and "
            f"{tuple(target.shape)}."
        )


def l1_error(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error per image: (B, C, H, W) x 2 -> (B,)."""
    _check_pair(prediction, target)
    return (prediction - target).abs().flatten(1).mean(dim=1)


def psnr(prediction: torch.Tensor, target: torch.Tensor, *, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: (B, C, H, W) x 2 -> (B,).

    `10 * log10(data_range^2 / MSE)`; identical images give 100 dB (the MSE is floored at 1e-10 * data_range^2).
    """
    _check_pair(prediction, target)
    mse = (prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    mse = mse.clamp_min(1e-10 * data_range**2)
    return 10 * torch.log10(data_range**2 / mse)


def gaussian_window(size: int, sigma: float, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """A normalised 1-D Gaussian (size,), centred on the middle tap."""
    positions = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    window = torch.exp(-(positions**2) / (2 * sigma**2))
    return window / window.sum()


def _blur(images: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable 'valid' Gaussian filter of every channel: (B, C, H, W) -> (B, C, H-k+1, W-k+1)."""
    channels = images.shape[1]
    size = window.numel()
    horizontal = window.view(1, 1, 1, size).expand(channels, 1, 1, size)
    vertical = window.view(1, 1, size, 1).expand(channels, 1, size, 1)
    images = F.conv2d(images, horizontal, groups=channels)
    return F.conv2d(images, vertical, groups=channels)


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window_size: int = SSIM_WINDOW_SIZE,
    sigma: float = SSIM_SIGMA,
) -> torch.Tensor:
    """Structural similarity per image, averaged over channels and window positions: (B, C, H, W) x 2 -> (B,).

    Gaussian-weighted local statistics over 'valid' positions. Images smaller than the window (the coarse levels
    of a loss pyramid) use the largest odd window that fits, with sigma scaled by the same factor.
    Range (-1, 1]; SSIM(x, x) = 1. Computed in float32 with autocast off: the variances are differences of
    nearly equal numbers, which bfloat16 rounds to noise.
    """
    _check_pair(prediction, target)
    smallest_side = min(prediction.shape[-2:])
    size = min(window_size, smallest_side if smallest_side % 2 == 1 else smallest_side - 1)
    if size < 1:
        raise ValueError(f"ssim needs images of at least 1x1 pixels; got {tuple(prediction.shape[-2:])}.")
    window = gaussian_window(size, sigma * size / window_size, device=prediction.device)
    x, y = prediction.float(), target.float()
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2

    with torch.autocast(x.device.type, enabled=False):
        mean_x, mean_y = _blur(x, window), _blur(y, window)
        var_x = _blur(x * x, window) - mean_x**2
        var_y = _blur(y * y, window) - mean_y**2
        covar = _blur(x * y, window) - mean_x * mean_y
        luminance = (2 * mean_x * mean_y + c1) / (mean_x**2 + mean_y**2 + c1)
        contrast_structure = (2 * covar + c2) / (var_x + var_y + c2)
        return (luminance * contrast_structure).flatten(1).mean(dim=1)
