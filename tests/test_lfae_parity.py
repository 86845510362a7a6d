"""The LFAE reproduces the authors' modules: parity fixtures, checkpoint key mapping, official configs.

Models are built from `tests/fixtures/official_parity/config.json`, never from sizes written here, so other fixture
sets pass through the same code. Tolerance: the fixture README's `atol = rtol = 1e-4`. On the fixture's own CPU the
outputs agree bit for bit; elsewhere MKL's GEMM/LAPACK kernels round differently in the last float32 bit, which
grows to a few 1e-6 through the decoder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from lfdm.models import LatentFlowAutoencoder
from lfdm.released_checkpoints import (
    lfae_config_from_official,
    lfae_state_dict_from_official,
    lfae_state_dict_to_official,
    load_official_lfae,
)

FIXTURES = Path(__file__).parent / "fixtures"
PARITY = FIXTURES / "official_parity"
CONFIGS = Path(__file__).parents[1] / "lfdm" / "configs"
SETUP = json.loads((PARITY / "config.json").read_text())["lfae"]
TOLERANCE = dict(atol=1e-4, rtol=1e-4)
# U and U diag(sqrt(S)) of the 2x2 SVD: equal up to float32 rounding, so any sign or axis flip fails loudly
SVD_TOLERANCE = dict(atol=1e-6, rtol=0)

# The authors' config/mug128.yaml `model_params`, as released (MHAD/NATOPS add `pad: 0` to the region predictor).
OFFICIAL_MUG_MODEL_PARAMS = {
    "num_regions": 10,
    "num_channels": 3,
    "estimate_affine": True,
    "revert_axis_swap": True,
    "bg_predictor_params": {"block_expansion": 32, "max_features": 1024, "num_blocks": 5, "bg_type": "affine"},
    "region_predictor_params": {
        "temperature": 0.1,
        "block_expansion": 32,
        "max_features": 1024,
        "scale_factor": 0.25,
        "num_blocks": 5,
        "pca_based": True,
        "fast_svd": False,
    },
    "generator_params": {
        "block_expansion": 64,
        "max_features": 512,
        "num_down_blocks": 2,
        "num_bottleneck_blocks": 6,
        "skips": True,
        "pixelwise_flow_predictor_params": {
            "block_expansion": 64,
            "max_features": 1024,
            "num_blocks": 5,
            "scale_factor": 0.25,
            "use_deformed_source": True,
            "use_covar_heatmap": True,
            "estimate_occlusion_map": True,
        },
    },
    "avd_network_params": {"id_bottle_size": 64, "pose_bottle_size": 64},
}


def _with_region_pad_zero(model_params: dict) -> dict:
    region = {**model_params["region_predictor_params"], "pad": 0}
    return {**model_params, "region_predictor_params": region}


@pytest.fixture(scope="module")
def model(parity_device) -> LatentFlowAutoencoder:
    loaded = load_official_lfae(PARITY / "lfae_official.pth", SETUP["model_params"], image_size=SETUP["image_size"])
    return loaded.to(parity_device)


@pytest.fixture(scope="module")
def io(parity_device) -> dict[str, torch.Tensor]:
    return {name: tensor.to(parity_device) for name, tensor in load_file(PARITY / "lfae_io.safetensors").items()}


def _assert_matches(actual: torch.Tensor, io: dict, name: str, tolerance: dict = TOLERANCE) -> None:
    expected = io[name].cpu()
    actual = actual.cpu().reshape(expected.shape)
    torch.testing.assert_close(actual, expected, **tolerance, msg=lambda m: f"{name}: {m}")


# --- numerics ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("frame", ["source", "driving"])
@torch.inference_mode()
def test_region_predictor_matches_official(model, io, frame):
    regions = model.region_predictor(io[f"in.{frame}"])
    for field in ("shift", "covar", "heatmap", "d"):
        _assert_matches(getattr(regions, field), io, f"out.region_predictor.{frame}.{field}")
    # u and d are stored flattened to (B*R, 2, 2) as the official code returns them; _assert_matches reshapes
    for field in ("affine", "u"):
        _assert_matches(getattr(regions, field), io, f"out.region_predictor.{frame}.{field}", SVD_TOLERANCE)


@torch.inference_mode()
def test_background_motion_matches_official(model, io):
    background = model.background_predictor(io["in.source"], io["in.driving"])
    _assert_matches(background, io, "out.bg_predictor.bg_params")


@torch.inference_mode()
def test_flow_predictor_intermediates_match_official(model, io):
    reference, driving = io["in.source"], io["in.driving"]
    motion = model.flow_predictor(
        reference,
        model.region_predictor(driving),
        model.region_predictor(reference),
        model.background_predictor(reference, driving),
    )
    for field in ("source_small", "heatmap_representation", "sparse_motion", "deformed_source", "mask"):
        _assert_matches(getattr(motion, field), io, f"out.pixelwise.{field}")


@torch.inference_mode()
def test_forward_matches_official_generator(model, io):
    output = model(io["in.source"], io["in.driving"])
    _assert_matches(output.flow, io, "out.generator.optical_flow")
    _assert_matches(output.occlusion, io, "out.generator.occlusion_map")
    _assert_matches(output.warped, io, "out.generator.deformed")
    _assert_matches(output.prediction, io, "out.generator.prediction")


@torch.inference_mode()
def test_encode_matches_official_features(model, io):
    features = model.encode(io["in.source"])
    _assert_matches(features, io, "out.generator.bottle_neck_feat")
    _assert_matches(features, io, "out.generator.compute_fea")


@pytest.mark.parametrize(
    ("flow", "occlusion", "expected"),
    [
        ("out.generator.optical_flow", "out.generator.occlusion_map", "out.generator.forward_with_flow"),
        ("in.fwf_ext.optical_flow", "in.fwf_ext.occlusion_map", "out.generator.forward_with_flow_ext"),
    ],
)
@torch.inference_mode()
def test_decode_matches_official_forward_with_flow(model, io, flow, occlusion, expected):
    decoded = model.decode(io["in.source"], io[flow], io[occlusion])
    _assert_matches(decoded.warped, io, f"{expected}.deformed")
    _assert_matches(decoded.prediction, io, f"{expected}.prediction")


@torch.inference_mode()
def test_batched_decode_equals_official_per_frame_decode(model, io):
    """One call for 2 references x 3 frames equals the official loop of one forward_with_flow per frame."""
    reference = io["in.source"]
    external_flow, external_occlusion = io["in.fwf_ext.optical_flow"], io["in.fwf_ext.occlusion_map"]
    own_flow, own_occlusion = io["out.generator.optical_flow"], io["out.generator.occlusion_map"]
    flows = torch.stack([external_flow, own_flow, external_flow.flip(2)], dim=1)  # (B, 3, h, w, 2)
    occlusions = torch.stack([external_occlusion, own_occlusion, 1 - external_occlusion], dim=1)  # (B, 3, 1, h, w)
    frames = flows.shape[1]
    # frames grouped (b f), reference outer: (B, 3, ...) -> (B * 3, ...)
    batched = model.decode(reference, flows.flatten(0, 1), occlusions.flatten(0, 1))
    for b in range(reference.shape[0]):
        for f in range(frames):
            single = model.decode(reference[b : b + 1], flows[b, f : f + 1], occlusions[b, f : f + 1])
            index = b * frames + f
            torch.testing.assert_close(batched.prediction[index : index + 1], single.prediction, atol=1e-5, rtol=0)
            torch.testing.assert_close(batched.warped[index : index + 1], single.warped, atol=1e-5, rtol=0)
    # the two known frames also match the official outputs
    _assert_matches(batched.prediction[1::frames], io, "out.generator.forward_with_flow.prediction")
    _assert_matches(batched.prediction[0::frames], io, "out.generator.forward_with_flow_ext.prediction")


def test_fresh_model_builds_the_official_blur_kernels():
    checkpoint = torch.load(PARITY / "lfae_official.pth", map_location="cpu", weights_only=True)
    fresh = LatentFlowAutoencoder(**lfae_config_from_official(SETUP["model_params"], SETUP["image_size"]))
    assert torch.equal(fresh.region_predictor.down.weight, checkpoint["region_predictor"]["down.weight"])
    flow_blur = checkpoint["generator"]["pixelwise_flow_predictor.down.weight"]
    assert torch.equal(fresh.flow_predictor.down.weight, flow_blur)


# --- checkpoint loading ----------------------------------------------------------------------------------------------


def test_loading_accepts_a_path_or_the_loaded_dict(model):
    checkpoint = torch.load(PARITY / "lfae_official.pth", map_location="cpu", weights_only=True)
    from_dict = load_official_lfae(checkpoint, SETUP["model_params"], image_size=SETUP["image_size"])
    for key, tensor in model.state_dict().items():
        assert torch.equal(from_dict.state_dict()[key], tensor.cpu()), key
    assert not from_dict.training, "a converted model is returned in eval mode"


def test_key_mapping_round_trips_the_official_checkpoint():
    checkpoint = torch.load(PARITY / "lfae_official.pth", map_location="cpu", weights_only=True)
    ours = lfae_state_dict_from_official(checkpoint)
    assert {key.split(".")[0] for key in ours} == {"generator", "region_predictor", "background_predictor"}
    back = lfae_state_dict_to_official(ours)
    for network in ("generator", "region_predictor", "bg_predictor"):
        assert back[network].keys() == checkpoint[network].keys()
        assert all(back[network][key] is checkpoint[network][key] for key in back[network])


def test_mismatched_checkpoint_error_lists_missing_unexpected_and_misshaped_keys():
    checkpoint = torch.load(PARITY / "lfae_official.pth", map_location="cpu", weights_only=True)
    generator = dict(checkpoint["generator"])
    del generator["final.bias"]
    generator["extra.weight"] = torch.zeros(1)
    generator["first.conv.weight"] = torch.zeros(1, 2, 3, 3)
    broken = {**checkpoint, "generator": generator}
    with pytest.raises(ValueError) as error:
        load_official_lfae(broken, SETUP["model_params"], image_size=SETUP["image_size"])
    message = str(error.value)
    for expected in ("missing", "generator.final.bias", "unexpected", "generator.extra.weight", "wrong shape"):
        assert expected in message, message
    assert "generator.first.conv.weight: checkpoint (1, 2, 3, 3)" in message


def test_checkpoint_without_a_network_is_rejected():
    checkpoint = torch.load(PARITY / "lfae_official.pth", map_location="cpu", weights_only=True)
    del checkpoint["bg_predictor"]
    with pytest.raises(ValueError, match="bg_predictor"):
        load_official_lfae(checkpoint, SETUP["model_params"], image_size=SETUP["image_size"])


class _Payload:  # anything that is not a tensor, number or string: refused by weights-only loading
    pass


def test_checkpoint_files_are_read_weights_only(tmp_path):
    path = tmp_path / "RegionMM_bad.pth"
    torch.save({"generator": _Payload()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_official_lfae(path, SETUP["model_params"], image_size=SETUP["image_size"])
    with pytest.raises(FileNotFoundError):
        load_official_lfae(tmp_path / "absent.pth", SETUP["model_params"])


# --- official configs and the full-size model ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "model_params"),
    [
        ("mug128.yaml", OFFICIAL_MUG_MODEL_PARAMS),
        ("mhad128.yaml", _with_region_pad_zero(OFFICIAL_MUG_MODEL_PARAMS)),
        ("natops128.yaml", _with_region_pad_zero(OFFICIAL_MUG_MODEL_PARAMS)),
    ],
)
def test_shipped_configs_equal_the_converted_official_configs(config, model_params):
    shipped = yaml.safe_load((CONFIGS / config).read_text())["lfae"]
    assert lfae_config_from_official(model_params, 128) == shipped


def test_default_arguments_are_the_mug_config():
    shipped = yaml.safe_load((CONFIGS / "mug128.yaml").read_text())["lfae"]
    with torch.device("meta"):
        model = LatentFlowAutoencoder()
    assert {key: model.config[key] for key in shipped} == shipped


def test_mraa_common_params_layout_is_accepted():
    common = {key: OFFICIAL_MUG_MODEL_PARAMS[key] for key in ("num_regions", "num_channels", "estimate_affine")}
    nested = {key: value for key, value in OFFICIAL_MUG_MODEL_PARAMS.items() if key not in common}
    nested["common_params"] = common
    assert lfae_config_from_official(nested) == lfae_config_from_official(OFFICIAL_MUG_MODEL_PARAMS)


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [
        (None, "estimate_affine", False),
        ("region_predictor_params", "pca_based", False),
        ("region_predictor_params", "fast_svd", True),
        ("bg_predictor_params", "bg_type", "zero"),
        ("generator_params", "skips", False),
        ("pixelwise_flow_predictor_params", "estimate_occlusion_map", False),
        ("pixelwise_flow_predictor_params", "use_covar_heatmap", False),
        ("pixelwise_flow_predictor_params", "use_deformed_source", False),
        ("region_predictor_params", "jacobian_type", "diagonal"),  # unknown key
    ],
)
def test_unsupported_official_options_raise(section, key, value):
    params = json.loads(json.dumps(OFFICIAL_MUG_MODEL_PARAMS))
    target = {
        None: params,
        "pixelwise_flow_predictor_params": params["generator_params"]["pixelwise_flow_predictor_params"],
    }.get(section, params.get(section))
    target[key] = value
    with pytest.raises(ValueError, match=key):
        lfae_config_from_official(params)


def test_full_size_model_has_the_official_keys_shapes_and_parameter_counts():
    reference = json.loads((FIXTURES / "lfdm_official_state_dicts.json").read_text())["lfae"]
    lfae = yaml.safe_load((CONFIGS / "mug128.yaml").read_text())["lfae"]
    with torch.device("meta"):
        model = LatentFlowAutoencoder(**lfae)
    official = lfae_state_dict_to_official(model.state_dict())
    for network, entries in reference["modules"].items():
        expected = {entry["key"]: (tuple(entry["shape"]), entry["dtype"]) for entry in entries["state_dict"]}
        actual = {key: (tuple(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in official[network].items()}
        assert actual == expected, network
    # official_lfdm.md 1.1: parameters and state-dict entries per network
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    assert count(model.generator) == 45_575_391
    assert count(model.generator.pixelwise_flow_predictor) == 37_730_268
    assert count(model.generator.bottleneck) == 7_087_104
    assert count(model.region_predictor) == 14_146_728
    assert count(model.background_predictor) == 6_282_438
    assert count(model) == reference["total_parameters"] == 66_004_557
    for name, parameters in reference["generator_submodule_param_counts"].items():
        assert count(getattr(model.generator, name)) == parameters, name
    assert [len(official[n]) for n in ("generator", "region_predictor", "bg_predictor")] == [196, 73, 37]
    assert (model.latent_size, model.feature_channels) == (32, 256)
