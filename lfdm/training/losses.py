"""Stage-one losses: multi-scale reconstruction (L1 + SSIM, or the paper's VGG19 perceptual loss) and MRAA's
equivariance terms.

Notation (variable -> paper / MRAA):
- `prediction` -> the reconstructed driving frame x_hat, `target` -> the driving frame x (B, 3, H, W) in [0, 1].
- `shift` -> region centre mu_k, `affine` -> region shape A_k = U diag(sqrt(S)) from the PCA of the heat map.
- `RandomWarp` -> the random transform T (affine + thin-plate spline) of the equivariance constraint: regions
  found in T^-1(x) must map back onto the regions found in x (Siarohin et al. 2021, sec. 3.2).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lfdm.latents import identity_grid
from lfdm.metrics import ssim
from lfdm.models.blocks import AntiAliasDownsample
from lfdm.training.config import AutoencoderTrainConfig

# ImageNet statistics the torchvision VGG19 weights were trained with (inputs in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's `vgg19().features`: 3x3 convolutions (channels) and 2x2 max-pools ("M"), each convolution followed
# by a ReLU. We build it up to relu5_1, with the same indices, so a torchvision state dict loads as it is.
VGG19_LAYOUT = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512)
# Indices in `features` of relu1_1, relu2_1, relu3_1, relu4_1, relu5_1.
VGG19_FEATURE_LAYERS = (1, 6, 11, 20, 29)


class ImagePyramid(nn.Module):
    """Anti-aliased copies of an image batch (B, C, H, W), one per scale (1 or 1/n), as MRAA's loss pyramid."""

    def __init__(self, scales: tuple[float, ...], channels: int = 3) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.levels = nn.ModuleList(AntiAliasDownsample(channels, scale) for scale in self.scales)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [level(images) for level in self.levels]


class VGG19Features(nn.Module):
    """The convolutional part of VGG19 up to relu5_1, with torchvision's parameter names (`features.<i>.weight`).

    `forward(images (B, 3, H, W) in [0, 1])` normalises with the ImageNet statistics and returns the five feature
    maps after relu1_1, relu2_1, relu3_1, relu4_1 and relu5_1. Parameters are frozen.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in VGG19_LAYOUT:
            if item == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(in_channels, item, kernel_size=3, padding=1), nn.ReLU()]
                in_channels = item
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_file(cls, path: str | Path) -> VGG19Features:
        """Load a torchvision `vgg19` state dict (`.pth` read with `weights_only=True`, or `.safetensors`).

        Only the `features.*` entries up to relu5_1 are used; the classifier and deeper layers are ignored.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"VGG19 weights file {str(path)!r} does not exist. Point `train_lfae.vgg19_weights` at a torchvision "
                "vgg19 state dict (e.g. vgg19-dcbb9e9d.pth), or set `vgg19_weight: 0` to train with L1 + SSIM."
            )
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
        network = cls()
        wanted = network.state_dict().keys()
        missing = [key for key in wanted if key not in state]
        if missing:
            raise ValueError(
                f"{path} is not a torchvision vgg19 state dict: it lacks {missing[:4]}. Save one with "
                "`torch.save(torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict(), 'vgg19.pth')`."
            )
        network.load_state_dict(OrderedDict((key, state[key]) for key in wanted))
        return network

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        hidden = (images - self.mean) / self.std
        outputs = []
        for index, layer in enumerate(self.features):
            hidden = layer(hidden)
            if index in VGG19_FEATURE_LAYERS:
                outputs.append(hidden)
        return outputs


class RandomWarp:
    """A random transform T of the plane (affine + thin-plate spline) for the equivariance losses, as MRAA's.

    T(z) = theta @ [z, 1] + sum_k w_k U(|z - c_k|_1) with U(r) = r^2 log r, control points c_k on a P x P grid
    over [-1, 1]^2 and one weight w_k per point added to both coordinates (MRAA's parameterisation).
    theta = [I | 0] + N(0, sigma_affine^2), w_k ~ N(0, sigma_tps^2). Coordinates are x first, in [-1, 1].
    Sample with a `torch.Generator` so a training step's warp is a function of its seed.
    """

    def __init__(
        self,
        batch_size: int,
        *,
        sigma_affine: float,
        sigma_tps: float,
        points_tps: int,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        noise = torch.randn(batch_size, 2, 3, generator=generator) * sigma_affine
        self.theta = (torch.eye(2, 3).unsqueeze(0) + noise).to(device)  # (B, 2, 3)
        self.control_points = identity_grid(points_tps, points_tps).reshape(-1, 2).to(device)  # (P*P, 2)
        self.control_weights = (torch.randn(batch_size, points_tps**2, generator=generator) * sigma_tps).to(device)

    def warp_coordinates(self, points: torch.Tensor) -> torch.Tensor:
        """T(points): (B, N, 2) -> (B, N, 2)."""
        theta = self.theta.to(points.dtype)
        warped = points @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]
        offsets = points[:, :, None, :] - self.control_points.to(points.dtype)  # (B, N, P*P, 2)
        radius = offsets.abs().sum(-1)
        spline = (radius**2 * torch.log(radius + 1e-6) * self.control_weights[:, None, :]).sum(-1)  # (B, N)
        return warped + spline[..., None]

    def jacobian(self, points: torch.Tensor) -> torch.Tensor:
        """dT/dz at `points`: (B, N, 2) -> (B, N, 2, 2), rows = output coordinate (x, y), columns = d/dx, d/dy."""
        theta = self.theta.to(points.dtype)
        offsets = points[:, :, None, :] - self.control_points.to(points.dtype)  # (B, N, P*P, 2)
        radius = offsets.abs().sum(-1, keepdim=True)
        # d/dr [r^2 log(r + eps)] = 2 r log(r + eps) + r^2 / (r + eps); d r / dz = sign(z - c) for the L1 radius.
        d_spline = 2 * radius * torch.log(radius + 1e-6) + radius**2 / (radius + 1e-6)
        gradient = (d_spline * offsets.sign() * self.control_weights[:, None, :, None]).sum(2)  # (B, N, 2)
        return theta[:, None, :, :2] + gradient[:, :, None, :]

    def warp_images(self, images: torch.Tensor) -> torch.Tensor:
        """Resample images (B, C, H, W) at T(z) for every pixel centre z (reflection padding)."""
        batch, _, height, width = images.shape
        grid = identity_grid(height, width, device=images.device, dtype=images.dtype)
        grid = self.warp_coordinates(rearrange(grid, "h w c -> 1 (h w) c").expand(batch, -1, -1))
        grid = rearrange(grid, "b (h w) c -> b h w c", h=height)
        # align_corners=True: grid values are pixel centres in linspace(-1, 1), the convention of the region centres.
        return F.grid_sample(images, grid, padding_mode="reflection", align_corners=True)


def equivariance_losses(
    driving_shift: torch.Tensor,
    driving_affine: torch.Tensor,
    transformed_shift: torch.Tensor,
    transformed_affine: torch.Tensor,
    warp: RandomWarp,
) -> tuple[torch.Tensor, torch.Tensor]:
    """MRAA's equivariance terms, unweighted: (shift loss, affine loss), scalars.

    Regions of x (`driving_*`) and of x' = x sampled at T (`transformed_*`): shifts (B, K, 2), affines (B, K, 2, 2).
    shift: mean |mu - T(mu')|; affine: mean |I - A^-1 J_T(mu') A'| after fixing the sign of the PCA axes
    (an eigenvector of the region covariance is defined up to sign).
    """
    driving_shift, driving_affine = driving_shift.float(), driving_affine.float()
    transformed_shift, transformed_affine = transformed_shift.float(), transformed_affine.float()
    shift_loss = (driving_shift - warp.warp_coordinates(transformed_shift)).abs().mean()

    mapped_affine = warp.jacobian(transformed_shift) @ transformed_affine
    relative = torch.linalg.inv(driving_affine) @ mapped_affine  # (B, K, 2, 2), ideally the identity
    relative = relative * torch.sign(relative[..., :1, :1])
    identity = torch.eye(2, device=relative.device, dtype=relative.dtype)
    affine_loss = (identity - relative).abs().mean()
    return shift_loss, affine_loss


def region_overlap(heatmap: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of every pair of distinct region heat maps (B, K, h, w), a scalar in [0, 1].

    1 when all regions are the same map, 0 when no two share a pixel. Used as a penalty, its gradient moves the
    regions apart where they overlap; MRAA's losses have no such term, and on faces whose head motion dominates
    the small motions of brows and mouth the regions can all settle on the head.
    """
    maps = F.normalize(heatmap.float().flatten(2), dim=2)  # (B, K, h*w), unit length
    regions = maps.shape[1]
    if regions < 2:
        return maps.new_zeros(())
    cosine = maps @ maps.transpose(1, 2)  # (B, K, K), ones on the diagonal
    return (cosine.sum(dim=(1, 2)) - regions).mean() / (regions * (regions - 1))


@dataclass
class LossOutput:
    """`total`: the weighted sum to back-propagate (scalar); `terms`: each weighted term (scalars), for logging."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


class ReconstructionLoss(nn.Module):
    """Pyramid reconstruction loss of a prediction against its target, both (B, 3, H, W) in [0, 1].

    Summed over `scales`: `l1_weight` * mean |x_hat - x| + `ssim_weight` * (1 - SSIM(x_hat, x)) +
    sum over relu1_1..relu5_1 of `vgg19_weight` * mean |phi(x_hat) - phi(x)| (the paper's perceptual loss, only
    when a `vgg19` feature network is given).

    `l1_motion_weight` alpha > 0 (not in the paper) weighs each pixel's L1 by 1 + alpha * c / mean(c), c = the
    channel-mean |x - reference|, normalised to mean 1 per image: the pixels that changed between the two frames
    (brows, mouth) count up to many times more than the still ones. `forward` then needs the reference frame.
    """

    def __init__(
        self,
        *,
        scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125),
        l1_weight: float = 10.0,
        ssim_weight: float = 10.0,
        vgg19_weight: float = 0.0,
        vgg19: VGG19Features | None = None,
        l1_motion_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if vgg19_weight > 0 and vgg19 is None:
            raise ValueError("vgg19_weight > 0 needs VGG19 features: pass `vgg19=VGG19Features.from_file(path)`.")
        if l1_motion_weight < 0:
            raise ValueError(f"l1_motion_weight must be >= 0 (0 = plain L1); got {l1_motion_weight}.")
        self.pyramid = ImagePyramid(scales)
        self.l1_weight, self.ssim_weight, self.vgg19_weight = l1_weight, ssim_weight, vgg19_weight
        self.l1_motion_weight = l1_motion_weight
        self.vgg19 = vgg19 if vgg19_weight > 0 else None

    def forward(
        self, prediction: torch.Tensor, target: torch.Tensor, reference: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        zero = prediction.new_zeros((), dtype=torch.float32)
        predictions = self.pyramid(prediction.float())
        targets = self.pyramid(target.float())
        if self.l1_weight:
            if self.l1_motion_weight:
                if reference is None:
                    raise ValueError("l1_motion_weight > 0 needs the reference frame: pass `reference=`.")
                levels = zip(predictions, targets, self.pyramid(reference.float()), strict=True)
                value = sum(self._motion_weighted_l1(p, t, r) for p, t, r in levels)
            else:
                value = sum((p - t).abs().mean() for p, t in zip(predictions, targets, strict=True))
            terms["l1"] = value * self.l1_weight
        if self.ssim_weight:
            dissimilarity = sum((1 - ssim(p, t)).mean() for p, t in zip(predictions, targets, strict=True))
            terms["ssim"] = dissimilarity * self.ssim_weight
        if self.vgg19 is not None:
            value = zero
            for p, t in zip(predictions, targets, strict=True):
                with torch.no_grad():
                    target_features = self.vgg19(t)
                for feature_p, feature_t in zip(self.vgg19(p), target_features, strict=True):
                    value = value + (feature_p - feature_t).abs().mean()
            terms["perceptual"] = value * self.vgg19_weight
        return terms

    def _motion_weighted_l1(self, prediction: torch.Tensor, target: torch.Tensor, reference: torch.Tensor):
        change = (target - reference).abs().mean(dim=1, keepdim=True)  # (B, 1, h, w)
        weight = 1 + self.l1_motion_weight * change / (change.mean(dim=(2, 3), keepdim=True) + 1e-6)
        weight = weight / weight.mean(dim=(2, 3), keepdim=True)  # mean 1 per image: still pairs count as plain L1
        return ((prediction - target).abs() * weight).mean()


def occlusion_saturation(logits: torch.Tensor, limit: float) -> torch.Tensor:
    """mean(relu(|logits| - limit)^2): zero while the occlusion head's logits stay within +-limit.

    The occlusion map is sigmoid(logits). Nothing in the reconstruction loss stops the logits from growing once
    "visible everywhere" helps (a 64 px run's reached about 25, sigmoid'(25) ~ 1e-11): the map then sticks at 1 and
    can no longer mark the new content (an opening mouth) that the decoder should paint. This term's gradient does
    not pass through the sigmoid, so it brings a saturated head back.
    """
    return F.relu(logits.float().abs() - limit).square().mean()


class AutoencoderLoss(nn.Module):
    """The stage-one objective: pyramid reconstruction of the driving frame + MRAA's equivariance terms (+ the
    optional region separation term, `region_overlap` of the driving frame's heat maps, and the optional
    `occlusion_saturation` of the occlusion logits; both off by default).

    `forward(prediction, target, driving_regions, transformed_regions, warp)`: prediction and target (B, 3, H, W)
    in [0, 1]; the regions (with `shift` (B, K, 2) and `affine` (B, K, 2, 2)) of the driving frame and of the
    driving frame sampled at `warp`, and `heatmap` (B, K, h, w) of the driving frame's for the separation term;
    `reference` (B, 3, H, W), the reference frame, for the motion-weighted L1; `occlusion_logits` (B, 1, h, w)
    for the saturation term. Without `warp`, the equivariance terms are skipped.
    """

    def __init__(
        self,
        reconstruction: ReconstructionLoss,
        *,
        equivariance_shift_weight: float = 10.0,
        equivariance_affine_weight: float = 10.0,
        region_separation_weight: float = 0.0,
        occlusion_logit_weight: float = 0.0,
        occlusion_logit_limit: float = 5.0,
    ) -> None:
        super().__init__()
        for name, weight in (
            ("region_separation_weight", region_separation_weight),
            ("occlusion_logit_weight", occlusion_logit_weight),
        ):
            if weight < 0:
                raise ValueError(f"{name} must be >= 0 (0 = off); got {weight}.")
        self.reconstruction = reconstruction
        self.equivariance_shift_weight = equivariance_shift_weight
        self.equivariance_affine_weight = equivariance_affine_weight
        self.region_separation_weight = region_separation_weight
        self.occlusion_logit_weight = occlusion_logit_weight
        self.occlusion_logit_limit = occlusion_logit_limit

    @property
    def uses_equivariance(self) -> bool:
        return bool(self.equivariance_shift_weight or self.equivariance_affine_weight)

    @classmethod
    def from_config(cls, config: AutoencoderTrainConfig) -> AutoencoderLoss:
        """Build from `train_lfae` settings (loads the VGG19 weights file when the perceptual loss is on)."""
        vgg19 = None
        if config.vgg19_weight > 0:
            if not config.vgg19_weights:
                raise ValueError(
                    "train_lfae.vgg19_weight > 0 needs train_lfae.vgg19_weights: the path of a torchvision vgg19 state "
                    "dict (e.g. vgg19-dcbb9e9d.pth). Without one, set vgg19_weight: 0 and use l1_weight / ssim_weight."
                )
            vgg19 = VGG19Features.from_file(config.vgg19_weights)
        reconstruction = ReconstructionLoss(
            scales=config.pyramid_scales,
            l1_weight=config.l1_weight,
            ssim_weight=config.ssim_weight,
            vgg19_weight=config.vgg19_weight,
            vgg19=vgg19,
            l1_motion_weight=config.l1_motion_weight,
        )
        return cls(
            reconstruction,
            equivariance_shift_weight=config.equivariance_shift_weight,
            equivariance_affine_weight=config.equivariance_affine_weight,
            region_separation_weight=config.region_separation_weight,
            occlusion_logit_weight=config.occlusion_logit_weight,
            occlusion_logit_limit=config.occlusion_logit_limit,
        )

    def forward(
        self,
        prediction: torch.Tensor,
        target: torch.Tensor,
        driving_regions=None,
        transformed_regions=None,
        warp: RandomWarp | None = None,
        reference: torch.Tensor | None = None,
        occlusion_logits: torch.Tensor | None = None,
    ) -> LossOutput:
        terms = self.reconstruction(prediction, target, reference)
        if warp is not None and self.uses_equivariance:
            shift_loss, affine_loss = equivariance_losses(
                driving_regions.shift,
                driving_regions.affine,
                transformed_regions.shift,
                transformed_regions.affine,
                warp,
            )
            if self.equivariance_shift_weight:
                terms["equivariance_shift"] = shift_loss * self.equivariance_shift_weight
            if self.equivariance_affine_weight:
                terms["equivariance_affine"] = affine_loss * self.equivariance_affine_weight
        if self.region_separation_weight:
            if driving_regions is None:
                raise ValueError("region_separation_weight > 0 needs the driving frame's regions (their heat maps).")
            terms["region_separation"] = region_overlap(driving_regions.heatmap) * self.region_separation_weight
        if self.occlusion_logit_weight:
            if occlusion_logits is None:
                raise ValueError("occlusion_logit_weight > 0 needs the occlusion head's logits.")
            saturation = occlusion_saturation(occlusion_logits, self.occlusion_logit_limit)
            terms["occlusion_saturation"] = saturation * self.occlusion_logit_weight
        total = sum(terms.values(), prediction.new_zeros((), dtype=torch.float32))
        return LossOutput(total=total, terms=terms)
