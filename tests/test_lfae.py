"""Behaviour of the latent flow autoencoder on a tiny random model (32 px, 3 regions, a few channels)."""

from __future__ import annotations

import pytest
import torch

from lfdm.models import LatentFlowAutoencoder
from lfdm.models.blocks import coordinate_grid
from lfdm.models.lfae.region_predictor import covariance_square_root
from lfdm.testing import tiny_lfae_config

TINY = tiny_lfae_config()


def _images(batch: int, seed: int, size: int = 32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=generator)


@pytest.fixture(scope="module")
def model() -> LatentFlowAutoencoder:
    torch.manual_seed(0)
    model = LatentFlowAutoencoder(**TINY).eval()
    with torch.no_grad():  # a non-identity background, so that path is exercised
        model.background_predictor.fc.weight.normal_(std=0.02)
    return model


@torch.inference_mode()
def test_public_methods_return_the_documented_shapes(model):
    reference, driving = _images(2, 0), _images(2, 1)
    h, c = model.latent_size, model.feature_channels
    assert (h, c) == (8, 16)
    pyramid = model.encode_pyramid(reference)
    assert [tuple(level.shape) for level in pyramid] == [(2, 4, 32, 32), (2, 8, 16, 16), (2, 16, 8, 8)]
    assert torch.equal(model.encode(reference), pyramid[-1])
    estimate = model.estimate_flow(reference, driving)
    assert estimate.flow.shape == (2, h, h, 2) and estimate.occlusion.shape == (2, 1, h, h)
    assert estimate.background.shape == (2, 3, 3)
    regions = estimate.driving_regions
    assert regions.shift.shape == (2, 3, 2) and regions.heatmap.shape == (2, 3, 8, 8)
    assert all(getattr(regions, name).shape == (2, 3, 2, 2) for name in ("covar", "affine", "u", "d"))
    assert 0 <= estimate.occlusion.min() and estimate.occlusion.max() <= 1
    decoded = model.decode(reference, estimate.flow, estimate.occlusion)
    assert decoded.prediction.shape == decoded.warped.shape == (2, 3, 32, 32)
    assert 0 <= decoded.prediction.min() and decoded.prediction.max() <= 1


@torch.inference_mode()
def test_batched_decode_equals_per_frame_decode(model):
    references = _images(2, 0)
    flows = coordinate_grid(8, 8).expand(6, 8, 8, 2) + 0.1 * torch.randn(6, 8, 8, 2)
    occlusions = torch.rand(6, 1, 8, 8)
    batched = model.decode(references, flows, occlusions)  # 3 frames per reference, grouped (b f)
    for index in range(6):
        single = model.decode(
            references[index // 3 : index // 3 + 1], flows[index : index + 1], occlusions[index : index + 1]
        )
        torch.testing.assert_close(batched.prediction[index : index + 1], single.prediction, atol=1e-5, rtol=0)
        torch.testing.assert_close(batched.warped[index : index + 1], single.warped, atol=1e-5, rtol=0)


@torch.inference_mode()
def test_decode_reuses_precomputed_features(model):
    references = _images(2, 0)
    flows, occlusions = coordinate_grid(8, 8).expand(4, 8, 8, 2), torch.rand(4, 1, 8, 8)
    fresh = model.decode(references, flows, occlusions)
    reused = model.decode(references, flows, occlusions, features=model.encode_pyramid(references))
    assert torch.equal(fresh.prediction, reused.prediction)


@torch.inference_mode()
def test_decoding_the_estimated_flow_reproduces_forward(model):
    reference, driving = _images(2, 0), _images(2, 1)
    output = model(reference, driving)
    decoded = model.decode(reference, output.flow, output.occlusion)
    assert torch.equal(decoded.prediction, output.prediction)
    assert torch.equal(decoded.warped, output.warped)


@torch.inference_mode()
def test_tuple_output_matches_dataclass_output(model):
    reference, driving = _images(1, 0), _images(1, 1)
    output = model(reference, driving)
    as_tuple = model(reference, driving, return_dict=False)
    assert torch.equal(as_tuple[0], output.prediction) and torch.equal(as_tuple[2], output.flow)


@torch.inference_mode()
def test_untrained_background_motion_is_the_identity():
    model = LatentFlowAutoencoder(**TINY).eval()
    background = model.background_predictor(_images(2, 0), _images(2, 1))
    assert torch.equal(background, torch.eye(3).expand(2, 3, 3))


@torch.inference_mode()
def test_regions_are_distributions_with_pca_shapes(model):
    regions = model.region_predictor(_images(2, 3))
    torch.testing.assert_close(regions.heatmap.sum(dim=(2, 3)), torch.ones(2, 3))
    assert regions.shift.abs().max() <= 1
    torch.testing.assert_close(regions.affine, regions.u @ regions.d)
    # affine affine^T = U S U^T = covar for a symmetric positive definite covariance
    torch.testing.assert_close(regions.affine @ regions.affine.transpose(-1, -2), regions.covar, atol=1e-6, rtol=1e-4)


@torch.inference_mode()
def test_region_pad_zero_shrinks_heat_maps_by_six_pixels():
    model = LatentFlowAutoencoder(**{**TINY, "image_size": 64, "region_pad": 0}).eval()
    output = model(_images(1, 0, 64), _images(1, 1, 64))
    assert output.driving_regions.heatmap.shape == (1, 3, 10, 10)
    assert output.prediction.shape == (1, 3, 64, 64) and output.flow.shape == (1, 16, 16, 2)


def test_svd_keeps_the_device_and_dtype_of_the_covariance():
    covar = torch.tensor([[[0.3, 0.05], [0.05, 0.2]]], dtype=torch.bfloat16)
    u, d = covariance_square_root(covar)
    assert u.dtype == d.dtype == torch.bfloat16 and u.device == covar.device
    torch.testing.assert_close((u @ d @ d @ u.transpose(-1, -2)).float(), covar.float(), atol=1e-2, rtol=0)


def test_autocast_keeps_the_geometry_in_float32(model, monkeypatch):
    """Under autocast (mixed-precision training) the networks run in bfloat16 but the region statistics, motions
    and flow are float32: bfloat16 coordinates make training diverge, and CUDA has no bfloat16 inverse (the CPU's
    inverse is patched to refuse low precision as CUDA does)."""
    invert = torch.linalg.inv

    def cuda_like_inverse(matrix):
        if matrix.dtype not in (torch.float32, torch.float64):
            raise RuntimeError(f"linalg.inv: Low precision dtypes not supported. Got {matrix.dtype}")
        return invert(matrix)

    monkeypatch.setattr(torch.linalg, "inv", cuda_like_inverse)
    monkeypatch.setattr(torch, "inverse", cuda_like_inverse)
    reference, driving = _images(2, seed=3), _images(2, seed=4)
    with torch.no_grad():
        exact = model(reference, driving)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            mixed = model(reference, driving)
    regions = mixed.driving_regions
    assert regions.shift.dtype == regions.covar.dtype == regions.affine.dtype == torch.float32
    assert mixed.flow.dtype == mixed.occlusion.dtype == torch.float32
    scale = exact.driving_regions.covar.abs().max()
    assert (regions.covar - exact.driving_regions.covar).abs().max() < 2e-3 * scale
    assert (mixed.flow - exact.flow).abs().max() < 0.02


def test_a_bfloat16_model_returns_bfloat16():
    model = LatentFlowAutoencoder(**TINY).eval().to(torch.bfloat16)
    with torch.no_grad():
        output = model(_images(1, seed=5).to(torch.bfloat16), _images(1, seed=6).to(torch.bfloat16))
    assert output.prediction.dtype == output.flow.dtype == output.driving_regions.covar.dtype == torch.bfloat16
    assert torch.isfinite(output.prediction.float()).all()


def test_training_step_reaches_every_network():
    torch.manual_seed(0)
    model = LatentFlowAutoencoder(**TINY).train()
    reference, driving = _images(4, 0), _images(4, 1)
    output = model(reference, driving)
    loss = (output.prediction - driving).abs().mean() + output.driving_regions.shift.abs().mean()
    loss.backward()
    for name in (
        "region_predictor.regions.weight",
        "background_predictor.fc.weight",
        "generator.pixelwise_flow_predictor.mask.weight",
        "generator.pixelwise_flow_predictor.occlusion.weight",
        "generator.first.conv.weight",
        "generator.final.weight",
    ):
        grad = model.get_parameter(name).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name
    assert all(buffer.requires_grad is False for buffer in model.buffers())


def test_residual_flow_head_starts_at_zero_then_shifts_the_flow_and_learns(model):
    from lfdm.models.lfae.flow_predictor import RESIDUAL_FLOW_SCALE
    from lfdm.training.warm_start import init_weights

    grown = LatentFlowAutoencoder(**{**TINY, "flow_residual": True}).eval()
    init_weights(grown, model, "test")  # the head is new: it keeps its zeros
    reference, driving = _images(2, 0), _images(2, 1)
    with torch.inference_mode():
        before, after = model.estimate_flow(reference, driving), grown.estimate_flow(reference, driving)
        assert torch.equal(after.flow, before.flow) and torch.equal(after.occlusion, before.occlusion)
        grown.flow_predictor.residual_flow.bias.copy_(torch.tensor([1.0, -2.0]))
        shifted = grown.estimate_flow(reference, driving).flow
    expected = torch.tensor([1.0, -2.0]) * RESIDUAL_FLOW_SCALE
    torch.testing.assert_close(shifted - before.flow, expected.expand_as(shifted), rtol=0, atol=1e-6)

    grown.train()
    (grown(reference, driving).prediction - driving).abs().mean().backward()
    grad = grown.flow_predictor.residual_flow.weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert "residual_flow" not in str(list(model.state_dict()))  # off by default: the released layout


def test_save_and_load_pretrained_round_trip(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = LatentFlowAutoencoder.from_pretrained(tmp_path).eval()
    public = lambda config: {key: value for key, value in config.items() if not key.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config)
    reference, driving = _images(1, 0), _images(1, 1)
    with torch.inference_mode():
        assert torch.equal(loaded(reference, driving).prediction, model(reference, driving).prediction)


def test_meta_device_builds_the_paper_model_without_memory():
    with torch.device("meta"):
        model = LatentFlowAutoencoder()
    assert all(parameter.is_meta for parameter in model.parameters())
    assert model.latent_size == 32 and model.feature_channels == 256


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"flow_scale_factor": 0.5}, "flow_scale_factor"),
        ({"region_num_blocks": 4}, "region_num_blocks"),
        ({"flow_num_blocks": 4}, "flow_num_blocks"),
        ({"region_scale_factor": 0.3}, "scale"),
    ],
)
def test_sizes_that_do_not_fit_raise(overrides, hint):
    with pytest.raises(ValueError, match=hint):
        LatentFlowAutoencoder(**{**TINY, **overrides})


@pytest.mark.parametrize(
    ("call", "hint"),
    [
        (lambda m: m.encode(_images(1, 0, 64)), "image_size"),
        (lambda m: m.estimate_flow(_images(2, 0), _images(1, 1)), "same batch size"),
        (lambda m: m.decode(_images(2, 0), torch.zeros(3, 8, 8, 2), torch.ones(3, 1, 8, 8)), "multiple"),
        (lambda m: m.decode(_images(1, 0), torch.zeros(2, 8, 8, 2), torch.ones(2, 8, 8)), "unsqueeze"),
        (lambda m: m.decode(_images(1, 0), torch.zeros(2, 16, 16, 2), torch.ones(2, 1, 16, 16)), "flow must be"),
        (
            lambda m: m.decode(
                _images(1, 0), torch.zeros(2, 8, 8, 2), torch.ones(2, 1, 8, 8), features=m.encode_pyramid(_images(2, 0))
            ),
            "same references",
        ),
    ],
)
def test_wrong_input_shapes_raise_with_a_hint(model, call, hint):
    with pytest.raises(ValueError, match=hint):
        call(model)
