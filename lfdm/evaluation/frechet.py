"""Fréchet distances between sets of video features: the Fréchet classifier distance (FCD), and FVD with I3D.

The Fréchet distance of two Gaussians N(mu_1, S_1) and N(mu_2, S_2) fitted to two feature sets is

    d² = |mu_1 - mu_2|² + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

(Dowson & Landau 1982; used as FID by Heusel et al. 2017 and as FVD by Unterthiner et al. 2018). It is reported as
d², as FID and FVD are.

- **FCD** (Fréchet classifier distance) is d² between the `features` of lfdm's own action classifier
  (`lfdm.evaluation.classifier`). It is *not* FVD: FVD uses the features of an I3D network trained on Kinetics-400,
  so FCD values are comparable only with FCD values from the same classifier checkpoint.
- **FVD** needs the I3D weights, which lfdm does not ship: pass the TorchScript file used by the common FVD
  implementations (`i3d_torchscript.pt`, 400-D features before the softmax) to `load_i3d`. Videos are resized to
  224 px and scaled to [-1, 1], as those implementations do.

Both distances shrink with the number of videos (the covariance of a few samples is noisy), so compare a
distance only with a floor computed from as many videos: lfdm reports FCD(real train, real test) beside it.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from einops import rearrange

logger = logging.getLogger(__name__)

I3D_SIZE = 224  # frame side the I3D network takes, px


@dataclass
class FeatureStatistics:
    """Mean (D,) and covariance (D, D) of N feature vectors, float64."""

    mean: np.ndarray
    covariance: np.ndarray
    count: int

    @classmethod
    def from_features(cls, features: np.ndarray | torch.Tensor) -> FeatureStatistics:
        """features (N, D), N >= 2 -> the sample mean and the unbiased sample covariance."""
        if isinstance(features, torch.Tensor):
            features = features.detach().cpu().numpy()
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"need features (N, D) with N >= 2 to fit a Gaussian; got shape {features.shape}.")
        return cls(features.mean(axis=0), np.cov(features, rowvar=False), features.shape[0])


def frechet_distance(first: FeatureStatistics, second: FeatureStatistics, *, eps: float = 1e-6) -> float:
    """The squared Fréchet distance d² of two fitted Gaussians (see the module docstring); >= 0.

    The matrix square root of S_1 S_2 is taken with `scipy.linalg.sqrtm`. When it is not finite (singular
    covariances, e.g. fewer samples than dimensions), `eps` is added to both diagonals and it is retried; tiny
    imaginary parts left by round-off are dropped.
    """
    if first.mean.shape != second.mean.shape:
        raise ValueError(f"feature dimensions differ: {first.mean.shape[0]} and {second.mean.shape[0]}.")
    mean_term = float(np.sum((first.mean - second.mean) ** 2))
    cov_1, cov_2 = np.atleast_2d(first.covariance), np.atleast_2d(second.covariance)
    root = _sqrtm(cov_1 @ cov_2)
    if not np.isfinite(root).all():
        logger.warning("singular covariance product; adding %g to the diagonals", eps)
        offset = np.eye(cov_1.shape[0]) * eps
        root = _sqrtm((cov_1 + offset) @ (cov_2 + offset))
    if np.iscomplexobj(root):
        largest = np.max(np.abs(root.imag))
        if largest > 1e-3 * max(1.0, np.max(np.abs(root.real))):
            logger.warning("matrix square root has an imaginary part of %.3g; keeping the real part", largest)
        root = root.real
    trace_term = float(np.trace(cov_1) + np.trace(cov_2) - 2 * np.trace(root))
    return max(mean_term + trace_term, 0.0)


def _sqrtm(matrix: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # singular products are expected with few videos; a non-finite result is handled by the caller
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        result = scipy.linalg.sqrtm(matrix)
    return result[0] if isinstance(result, tuple) else result  # older scipy returned (root, error)


def frechet_distance_of_features(first: np.ndarray | torch.Tensor, second: np.ndarray | torch.Tensor) -> float:
    """d² between two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(FeatureStatistics.from_features(first), FeatureStatistics.from_features(second))


# ---------------------------------------------------------------------------------------------------------------------
# FVD with a user-supplied I3D


def load_i3d(path: str | Path, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """The I3D feature network from a TorchScript file (`torch.jit.load`), in eval mode on `device`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no I3D weights at {path}: pass the TorchScript file the common FVD implementations use "
            "(i3d_torchscript.pt), or leave out --i3d-weights to skip FVD."
        )
    with warnings.catch_warnings():
        # FVD's I3D weights circulate as TorchScript only; newer torch marks the loader deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path), map_location=device).eval()


def prepare_i3d_input(videos: torch.Tensor) -> torch.Tensor:
    """(B, 3, F, H, W) in [0, 1] -> (B, 3, F, 224, 224) in [-1, 1]: bilinear resize of the shorter side to 224 px,
    centre crop, as the common FVD implementations prepare I3D's input."""
    b, _, _, height, width = videos.shape
    scale = I3D_SIZE / min(height, width)
    size = (max(I3D_SIZE, round(height * scale)), max(I3D_SIZE, round(width * scale)))
    frames = rearrange(videos.float(), "b c f h w -> (b f) c h w")
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - I3D_SIZE) // 2, (size[1] - I3D_SIZE) // 2
    frames = frames[:, :, top : top + I3D_SIZE, left : left + I3D_SIZE]
    return rearrange(frames * 2 - 1, "(b f) c h w -> b c f h w", b=b).contiguous()


@torch.no_grad()
def i3d_features(detector: torch.nn.Module, videos: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
    """videos (N, 3, F, H, W) in [0, 1] -> I3D features (N, D) float32 on the CPU (D = 400 for the usual file).

    The network is called as the common FVD implementations call it: on 224 px input in [-1, 1] with
    `rescale=False, resize=False, return_features=True` (the logits before the softmax).
    """
    device = next(iter(detector.parameters()), torch.empty(0)).device
    features = []
    for chunk in videos.split(batch_size):
        inputs = prepare_i3d_input(chunk).to(device)
        output = detector(inputs, rescale=False, resize=False, return_features=True)
        features.append(output.float().reshape(chunk.shape[0], -1).cpu())
    return torch.cat(features)
