"""Stage-one losses and the reconstruction metrics they share with evaluation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from lfdm.metrics import l1_error, psnr, ssim
from lfdm.training.losses import (
    VGG19_FEATURE_LAYERS,
    AutoencoderLoss,
    ImagePyramid,
    RandomWarp,
    ReconstructionLoss,
    VGG19Features,
    equivariance_losses,
    occlusion_saturation,
    region_overlap,
)


def images(batch=2, size=32, seed=0):
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_ssim_of_an_image_with_itself_is_one():
    x = images()
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-5)


def test_ssim_drops_with_noise_and_works_below_the_window_size():
    x = images()
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert (ssim(noisy, x) < 0.9).all()
    tiny = images(size=4)
    assert torch.allclose(ssim(tiny, tiny), torch.ones(2), atol=1e-5), "4 px images use a smaller window"


def test_ssim_is_float32_under_autocast():
    """Mixed-precision training calls the loss under autocast; bfloat16 variances are rounding noise."""
    x = images()
    noisy = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = ssim(noisy, x)
    torch.testing.assert_close(mixed, ssim(noisy, x), atol=1e-6, rtol=0)


def test_occlusion_saturation_is_zero_inside_the_limit_and_has_a_gradient_outside():
    logits = torch.tensor([[-7.0, -2.0], [4.0, 25.0]], requires_grad=True)
    penalty = occlusion_saturation(logits, limit=5.0)
    assert penalty.item() == pytest.approx((2.0**2 + 20.0**2) / 4)
    penalty.backward()
    assert logits.grad.tolist() == [[-1.0, 0.0], [0.0, 10.0]], "d/dlogit of (|l| - 5)^2 / 4 for the two outside"
    with pytest.raises(ValueError, match="occlusion_logit_weight"):
        AutoencoderLoss(ReconstructionLoss(), occlusion_logit_weight=1.0)(images(), images())


def test_psnr_of_a_known_error():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(y, x).item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(x, x).item() == pytest.approx(100.0), "identical images are capped at 100 dB"
    assert l1_error(y, x).item() == pytest.approx(0.1)


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        psnr(images(size=32), images(size=16))


def test_pyramid_has_one_level_per_scale():
    levels = ImagePyramid((1.0, 0.5, 0.25, 0.125))(images(size=64))
    assert [tuple(level.shape[-2:]) for level in levels] == [(64, 64), (32, 32), (16, 16), (8, 8)]


def test_reconstruction_loss_is_zero_for_a_perfect_prediction_and_differentiable():
    loss = ReconstructionLoss(scales=(1.0, 0.5))
    x = images()
    assert all(value.abs().item() < 1e-5 for value in loss(x, x).values())
    prediction = images(seed=1).requires_grad_()
    terms = loss(prediction, x)
    assert set(terms) == {"l1", "ssim"}
    sum(terms.values()).backward()
    assert prediction.grad.abs().sum() > 0


def random_vgg19_file(tmp_path):
    """A torchvision-layout vgg19 state dict with random weights, including keys the loss does not use."""
    state = VGG19Features().state_dict()
    state["features.30.weight"] = torch.zeros(512, 512, 3, 3)  # deeper layers and the classifier are ignored
    state["classifier.0.weight"] = torch.zeros(8, 8)
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    return path


def test_vgg19_loss_loads_a_torchvision_layout_file_and_is_positive_and_differentiable(tmp_path):
    vgg = VGG19Features.from_file(random_vgg19_file(tmp_path))
    assert len(vgg(images())) == len(VGG19_FEATURE_LAYERS) == 5
    loss = ReconstructionLoss(scales=(1.0, 0.5), l1_weight=0, ssim_weight=0, vgg19_weight=10, vgg19=vgg)
    prediction = images(seed=1).requires_grad_()
    terms = loss(prediction, images())
    assert set(terms) == {"perceptual"} and terms["perceptual"].item() > 0
    terms["perceptual"].backward()
    assert prediction.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in vgg.parameters()), "the VGG19 weights stay frozen"


def test_vgg19_file_errors_say_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="vgg19_weight: 0"):
        VGG19Features.from_file(tmp_path / "missing.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="torchvision vgg19"):
        VGG19Features.from_file(tmp_path / "wrong.pth")


def identity_warp(batch=2):
    return RandomWarp(batch, sigma_affine=0.0, sigma_tps=0.0, points_tps=5)


def test_identity_warp_leaves_images_and_points_unchanged():
    x = images()
    warp = identity_warp()
    assert torch.allclose(warp.warp_images(x), x, atol=1e-5)
    points = torch.rand(2, 7, 2) * 2 - 1
    assert torch.allclose(warp.warp_coordinates(points), points)
    assert torch.allclose(warp.jacobian(points), torch.eye(2).expand(2, 7, 2, 2))


def test_warp_jacobian_matches_autograd():
    generator = torch.Generator().manual_seed(3)
    warp = RandomWarp(2, sigma_affine=0.05, sigma_tps=0.005, points_tps=5, generator=generator)
    points = (torch.rand(2, 6, 2, generator=generator) * 1.8 - 0.9).requires_grad_()
    warped = warp.warp_coordinates(points)
    rows = [torch.autograd.grad(warped[..., i].sum(), points, retain_graph=True)[0] for i in range(2)]
    expected = torch.stack(rows, dim=-2)  # (B, N, 2 outputs, 2 inputs)
    assert torch.allclose(warp.jacobian(points.detach()), expected, atol=1e-5)


def test_same_generator_seed_gives_the_same_warp():
    make = lambda: RandomWarp(
        2, sigma_affine=0.05, sigma_tps=0.005, points_tps=5, generator=torch.Generator().manual_seed(7)
    )
    first, second = make(), make()
    assert torch.equal(first.theta, second.theta) and torch.equal(first.control_weights, second.control_weights)


def soft_regions(image: torch.Tensor, num_regions: int = 3):
    """A stand-in region predictor: intensity-weighted centres and PCA shapes of each of the first K channels."""
    from lfdm.latents import identity_grid

    weights = image[:, :num_regions].flatten(2).softmax(-1)  # (B, K, HW)
    grid = identity_grid(*image.shape[-2:]).reshape(-1, 2)
    shift = weights @ grid
    centred = grid[None, None] - shift[:, :, None]
    covar = torch.einsum("bkn,bkni,bknj->bkij", weights, centred, centred)
    u, s, _ = torch.linalg.svd(covar)
    return SimpleNamespace(shift=shift, affine=u @ torch.diag_embed(s.sqrt()))


def test_equivariance_losses_vanish_for_the_identity_transform():
    x = images()
    warp = identity_warp()
    regions = soft_regions(x)
    transformed = soft_regions(warp.warp_images(x))
    shift_loss, affine_loss = equivariance_losses(
        regions.shift, regions.affine, transformed.shift, transformed.affine, warp
    )
    assert shift_loss.item() < 1e-5 and affine_loss.item() < 1e-4


def test_equivariance_losses_are_positive_for_a_random_transform_of_a_fixed_prediction():
    x = images()
    warp = RandomWarp(2, sigma_affine=0.2, sigma_tps=0.005, points_tps=5, generator=torch.Generator().manual_seed(1))
    regions = soft_regions(x)
    shift_loss, affine_loss = equivariance_losses(regions.shift, regions.affine, regions.shift, regions.affine, warp)
    assert shift_loss.item() > 1e-3 and affine_loss.item() > 1e-3


def test_autoencoder_loss_sums_weighted_terms():
    x, prediction = images(), images(seed=1)
    generator = torch.Generator().manual_seed(5)
    warp = RandomWarp(2, sigma_affine=0.1, sigma_tps=0.01, points_tps=5, generator=generator)
    driving, transformed = soft_regions(x), soft_regions(prediction)
    criterion = AutoencoderLoss(
        ReconstructionLoss(scales=(1.0,), l1_weight=3.0, ssim_weight=0.5),
        equivariance_shift_weight=7.0,
        equivariance_affine_weight=0,
    )
    output = criterion(prediction, x, driving, transformed, warp)
    shift_loss, _ = equivariance_losses(driving.shift, driving.affine, transformed.shift, transformed.affine, warp)
    expected = {
        "l1": 3.0 * (prediction - x).abs().mean(),
        "ssim": 0.5 * (1 - ssim(prediction, x)).mean(),
        "equivariance_shift": 7.0 * shift_loss,
    }
    assert set(output.terms) == set(expected), "a zero weight switches its term off"
    for name, value in expected.items():
        assert value.item() > 1e-4, f"{name}: the inputs must make every unweighted term non-zero"
        assert output.terms[name].item() == pytest.approx(value.item(), rel=1e-5), f"{name} is not weight * term"
    assert output.total.item() == pytest.approx(sum(v.item() for v in expected.values()), rel=1e-5)
    assert math.isfinite(output.total.item())
    assert set(criterion(prediction, x).terms) == {"l1", "ssim"}, "no warp: no equivariance terms"


def test_equivariance_losses_vanish_for_the_identity_transform_with_the_region_predictor():
    from lfdm.models import LatentFlowAutoencoder

    torch.manual_seed(0)
    model = LatentFlowAutoencoder(
        image_size=32,
        num_regions=4,
        region_block_expansion=8,
        region_max_features=32,
        region_num_blocks=3,
        background_num_blocks=3,
        block_expansion=8,
        max_features=32,
        flow_block_expansion=8,
        flow_max_features=32,
        flow_num_blocks=3,
    )
    x = images()
    warp = identity_warp()
    regions = model.region_predictor(x)
    transformed = model.region_predictor(warp.warp_images(x))
    shift_loss, affine_loss = equivariance_losses(
        regions.shift, regions.affine, transformed.shift, transformed.affine, warp
    )
    assert shift_loss.item() < 1e-5 and affine_loss.item() < 1e-3


def test_region_overlap_is_one_for_equal_maps_zero_for_disjoint_ones_and_pushes_regions_apart():
    blob = torch.zeros(8, 8)
    blob[2:5, 2:5] = 1 / 9
    same = blob.expand(1, 3, 8, 8)
    assert region_overlap(same).item() == pytest.approx(1.0)
    disjoint = torch.zeros(1, 2, 8, 8)
    disjoint[0, 0, :4], disjoint[0, 1, 4:] = 1 / 32, 1 / 32
    assert region_overlap(disjoint).item() == pytest.approx(0.0, abs=1e-6)
    assert region_overlap(same[:, :1]).item() == 0.0, "one region overlaps nothing"

    # two largely overlapping blobs (centres 1 px apart on 8 x 8): gradient steps on the penalty separate them
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    logits = torch.stack([-((xs - cx) ** 2 + (ys - 3.5) ** 2) / 4 for cx in (3.0, 4.0)])[None].requires_grad_()
    before = region_overlap(torch.softmax(logits.flatten(2), dim=2).view(1, 2, 8, 8))
    optimizer = torch.optim.SGD([logits], lr=10.0)
    for _ in range(20):
        optimizer.zero_grad()
        region_overlap(torch.softmax(logits.flatten(2), dim=2).view(1, 2, 8, 8)).backward()
        optimizer.step()
    after = region_overlap(torch.softmax(logits.detach().flatten(2), dim=2).view(1, 2, 8, 8))
    assert before.item() > 0.7 and after.item() < before.item() - 0.3


def test_region_separation_term_comes_from_the_config_and_is_logged():
    from lfdm.training.config import AutoencoderTrainConfig

    criterion = AutoencoderLoss.from_config(AutoencoderTrainConfig(region_separation_weight=2.0))
    x = images()
    heatmap = torch.full((2, 4, 5, 5), 1 / 25)  # four equal regions: overlap 1
    regions = SimpleNamespace(heatmap=heatmap)
    output = criterion(x, x, regions, None, None)
    assert output.terms["region_separation"].item() == pytest.approx(2.0)
    with pytest.raises(ValueError, match="driving frame's regions"):
        criterion(x, x)
    with pytest.raises(ValueError, match=">= 0"):
        AutoencoderLoss.from_config(AutoencoderTrainConfig(region_separation_weight=-1.0))
    default = AutoencoderLoss.from_config(AutoencoderTrainConfig())(x, x, regions, None, None)
    assert "region_separation" not in default.terms, "off by default (the paper has no such term)"


def test_motion_weighted_l1_counts_changed_pixels_more_and_needs_the_reference():
    reference = torch.zeros(1, 3, 16, 16)
    target = reference.clone()
    target[..., 4:8, 4:8] = 1.0  # only this patch changed between the frames
    loss = ReconstructionLoss(scales=(1.0,), ssim_weight=0, l1_weight=1, l1_motion_weight=10)
    plain = ReconstructionLoss(scales=(1.0,), ssim_weight=0, l1_weight=1)
    error_in_patch, error_elsewhere = target.clone(), target.clone()
    error_in_patch[..., 5, 5] -= 0.5
    error_elsewhere[..., 12, 12] += 0.5
    # the same error costs the same with plain L1, more where the frames changed with the motion weight
    assert plain(error_in_patch, target)["l1"].item() == pytest.approx(plain(error_elsewhere, target)["l1"].item())
    weighted_in = loss(error_in_patch, target, reference)["l1"].item()
    weighted_out = loss(error_elsewhere, target, reference)["l1"].item()
    assert weighted_in > 5 * weighted_out
    # a still pair (no change anywhere) is scored as plain L1
    still = ReconstructionLoss(scales=(1.0,), ssim_weight=0, l1_weight=1, l1_motion_weight=10)
    assert still(error_elsewhere, reference, reference)["l1"].item() == pytest.approx(
        plain(error_elsewhere, reference)["l1"].item()
    )
    with pytest.raises(ValueError, match="reference frame"):
        loss(error_in_patch, target)
    with pytest.raises(ValueError, match=">= 0"):
        ReconstructionLoss(l1_motion_weight=-1)
