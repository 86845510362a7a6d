"""The diffusion model loaded from the authors' checkpoint layout gives the authors' numbers.

Fixtures: `tests/fixtures/official_parity/` (README.md there): small official U-Nets with seeded weights, their
inputs and outputs. Models are built from `config.json`, never from sizes written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import diffusers.schedulers.scheduling_ddpm as scheduling_ddpm
import pytest
import torch
from safetensors.torch import load_file

from lfdm.guidance import guided_model_output
from lfdm.models.unet3d import FlowUNet3D
from lfdm.released_checkpoints import (
    load_official_unet,
    official_rotary_keys,
    official_unet_keys,
    unet_config_from_official,
)
from lfdm.schedulers import make_training_scheduler

FIXTURES = Path(__file__).parent / "fixtures" / "official_parity"
REFERENCE = Path(__file__).parent / "fixtures" / "lfdm_official_state_dicts.json"
CONFIG = json.loads((FIXTURES / "config.json").read_text())
VARIANTS = {
    "mug": ("dm_official.pth", "dm_io.safetensors", "Unet3D_mug"),
    "natops": ("dm_official_natops_variant.pth", "dm_io_natops.safetensors", "Unet3D_natops"),
}
TOLERANCE = {"atol": 1e-4, "rtol": 1e-4}  # the fixture README's recommendation


@dataclass
class Loaded:
    unet: FlowUNet3D
    io: dict[str, torch.Tensor]
    eps_cond: torch.Tensor
    eps_null: torch.Tensor
    eps_guided: torch.Tensor  # guidance scale 2
    checkpoint: dict
    params: dict


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def loaded(request, parity_device) -> Loaded:
    """The U-Net's three predictions are made on `parity_device`; the rest of the checks run on the CPU."""
    checkpoint_file, io_file, params_key = VARIANTS[request.param]
    params = CONFIG["dm"][params_key]
    checkpoint = torch.load(FIXTURES / checkpoint_file, map_location="cpu", weights_only=True)
    unet = load_official_unet(FIXTURES / checkpoint_file, params)
    io = load_file(FIXTURES / io_file)
    inputs = [io[name].to(parity_device) for name in ("in.x_t", "in.t", "in.fea", "in.cond")]
    with torch.no_grad():
        unet.to(parity_device)
        eps_cond = unet(*inputs).sample.cpu()
        eps_null = unet(*inputs[:3], None).sample.cpu()
        eps_guided = guided_model_output(unet, *inputs, 2.0).cpu()
        unet.cpu()
    return Loaded(unet, io, eps_cond, eps_null, eps_guided, checkpoint, params)


def assert_matches(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    difference = (actual - expected).abs().max().item()
    torch.testing.assert_close(actual, expected, **TOLERANCE, msg=f"{what}: max abs diff {difference:.3g}")


def ddpm_step_with_noise(scheduler, eps, sample, timesteps, noise, monkeypatch):
    """One `DDPMScheduler.step` per sample (diffusers steps one t at a time) with the stored noise injected."""
    previous, clean = [], []
    for i, t in enumerate(timesteps.tolist()):
        monkeypatch.setattr(scheduling_ddpm, "randn_tensor", lambda *args, i=i, **kwargs: noise[i : i + 1])
        out = scheduler.step(eps[i : i + 1], t, sample[i : i + 1])
        previous.append(out.prev_sample)
        clean.append(out.pred_original_sample)
    return torch.cat(previous), torch.cat(clean)


def test_time_embedding_matches_official(loaded):
    with torch.no_grad():
        embedding = loaded.unet.time_embedding(loaded.io["in.t"])
    assert_matches(embedding, loaded.io["out.unet.time_emb"], "time embedding")


def test_relative_position_bias_matches_official(loaded):
    frames = loaded.io["in.x_t"].shape[2]
    with torch.no_grad():
        assert_matches(loaded.unet.relative_position_bias(frames), loaded.io["out.unet.rel_pos_bias"], "bias")
        if "out.unet.rel_pos_bias_40" in loaded.io:  # reaches the log-spaced buckets and their cap
            assert_matches(loaded.unet.relative_position_bias(40), loaded.io["out.unet.rel_pos_bias_40"], "bias 40")


def test_conditional_noise_matches_official(loaded):
    assert_matches(loaded.eps_cond, loaded.io["out.unet.eps_cond"], "conditional eps")


def test_null_label_noise_matches_official(loaded):
    assert_matches(loaded.eps_null, loaded.io["out.unet.eps_null"], "null-label eps")


def test_guided_model_output_matches_official(loaded):
    assert_matches(loaded.eps_guided, loaded.io["out.unet.eps_guided_cs2"], "guided eps (scale 2)")


def test_ddpm_step_matches_official(loaded, monkeypatch):
    io = loaded.io
    scheduler = make_training_scheduler()
    scheduler.set_timesteps(1000)
    previous, clean = ddpm_step_with_noise(
        scheduler, loaded.eps_cond, io["in.x_t"], io["in.t"], io["in.step_noise"], monkeypatch
    )
    assert_matches(clean, io["out.p_sample.x0"], "thresholded x0")
    assert_matches(previous, io["out.p_sample.x_prev"], "x_{t-1}")
    log_variance = torch.stack([torch.log(scheduler._get_variance(t)) for t in io["in.t"].tolist()])
    assert_matches(log_variance, io["out.p_sample.model_log_variance"].flatten(), "posterior log variance")


def test_guided_ddpm_step_matches_official(loaded, monkeypatch):
    io = loaded.io
    if "out.p_sample_cs2.x_prev" in io:  # stored in the MUG file only
        scheduler = make_training_scheduler()
        scheduler.set_timesteps(1000)
        previous, _ = ddpm_step_with_noise(
            scheduler, loaded.eps_guided, io["in.x_t"], io["in.t"], io["in.step_noise"], monkeypatch
        )
        assert_matches(previous, io["out.p_sample_cs2.x_prev"], "guided x_{t-1}")
    else:
        assert not loaded.params["use_deconv"], "only the NATOPS file lacks the guided step"


def test_add_noise_matches_official_q_sample():
    io = load_file(FIXTURES / VARIANTS["mug"][1])  # x_start and q_noise are stored in the MUG file only
    noisy = make_training_scheduler().add_noise(io["in.x_start"], io["in.q_noise"], io["in.t"])
    assert_matches(noisy, io["in.x_t"], "q_sample")


def test_null_label_embedding_follows_variant(loaded):
    null = loaded.unet.null_label_embedding
    if loaded.params["learn_null_cond"]:
        assert isinstance(null, torch.nn.Parameter)
        torch.testing.assert_close(null.data, loaded.checkpoint["diffusion"]["denoise_fn.null_cond_emb"])
        assert "null_label_embedding" in loaded.unet.state_dict()
    else:
        assert not isinstance(null, torch.nn.Parameter) and torch.count_nonzero(null) == 0
        assert "null_label_embedding" not in loaded.unet.state_dict(), "a zeros null embedding is not saved"


# --- strict loading ----------------------------------------------------------------------------------------------


@pytest.fixture()
def mug_checkpoint() -> dict:
    return torch.load(FIXTURES / VARIANTS["mug"][0], map_location="cpu", weights_only=True)


MUG_PARAMS = CONFIG["dm"]["Unet3D_mug"]


def test_loads_from_dict_like_from_path(mug_checkpoint):
    from_dict = load_official_unet(mug_checkpoint, MUG_PARAMS)
    from_path = load_official_unet(FIXTURES / VARIANTS["mug"][0], MUG_PARAMS)
    for (key, a), b in zip(from_dict.state_dict().items(), from_path.state_dict().values(), strict=True):
        assert torch.equal(a, b), key


def test_missing_key_is_named_in_official_terms(mug_checkpoint):
    del mug_checkpoint["diffusion"]["denoise_fn.downs.0.2.fn.fn.to_out.bias"]
    with pytest.raises(ValueError, match=r"missing \(1\): denoise_fn\.downs\.0\.2\.fn\.fn\.to_out\.bias"):
        load_official_unet(mug_checkpoint, MUG_PARAMS)


def test_unexpected_key_is_rejected(mug_checkpoint):
    mug_checkpoint["diffusion"]["denoise_fn.extra.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"unexpected \(1\): denoise_fn\.extra\.weight"):
        load_official_unet(mug_checkpoint, MUG_PARAMS)


def test_wrong_variant_parameters_are_rejected(mug_checkpoint):
    natops_params = CONFIG["dm"]["Unet3D_natops"]  # nearest up-sampling and a learned null label: other keys
    with pytest.raises(ValueError, match="denoise_fn.null_cond_emb"):
        load_official_unet(mug_checkpoint, natops_params)


def test_wrong_size_is_rejected(mug_checkpoint):
    with pytest.raises(ValueError, match="wrong shape"):
        load_official_unet(mug_checkpoint, {**MUG_PARAMS, "channels": MUG_PARAMS["channels"] + 1})


def test_different_schedule_is_rejected(mug_checkpoint):
    betas = mug_checkpoint["diffusion"]["betas"]
    betas[-1] = 0.999  # diffusers' own cosine clip instead of the official 0.9999
    with pytest.raises(ValueError, match=r"different noise schedule: \['betas'\]"):
        load_official_unet(mug_checkpoint, MUG_PARAMS)


def test_missing_schedule_is_rejected(mug_checkpoint):
    del mug_checkpoint["diffusion"]["posterior_mean_coef2"]
    with pytest.raises(ValueError, match="posterior_mean_coef2"):
        load_official_unet(mug_checkpoint, MUG_PARAMS)


def test_wrong_rotary_frequencies_are_rejected(mug_checkpoint):
    mug_checkpoint["diffusion"]["denoise_fn.mid_temporal_attn.fn.fn.fn.rotary_emb.freqs"] *= 2
    with pytest.raises(ValueError, match="rotary frequencies"):
        load_official_unet(mug_checkpoint, MUG_PARAMS)


def test_checkpoint_without_diffusion_entry_is_rejected():
    with pytest.raises(ValueError, match="no 'diffusion' entry"):
        load_official_unet({"generator": {}}, MUG_PARAMS)


def test_missing_file_is_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_official_unet(tmp_path / "flowdiff.pth", MUG_PARAMS)


def test_unknown_official_argument_is_rejected():
    with pytest.raises(ValueError, match="unknown official Unet3D arguments"):
        unet_config_from_official({**MUG_PARAMS, "use_fancy_attention": True})
    with pytest.raises(ValueError, match="unsupported"):
        unet_config_from_official({**MUG_PARAMS, "use_bert_text_cond": False})


# --- the released full-size layout (keys and shapes only) ---------------------------------------------------------


def full_size_unet(learned_null: bool) -> FlowUNet3D:
    params = {"dim": 64, "channels": 259, "dim_mults": (1, 2, 4, 8), "use_bert_text_cond": True}
    if learned_null:
        params.update(learn_null_cond=True, use_deconv=False, padding_mode="reflect")
    with torch.device("meta"):  # shapes only: no memory, no initialisation time
        return FlowUNet3D(**unet_config_from_official(params))


def reference_layout(variant: str) -> dict[str, tuple[int, ...]]:
    dm = json.loads(REFERENCE.read_text())["dm"]
    layout = {entry["key"]: tuple(entry["shape"]) for entry in dm["state_dict"]}
    if variant == "natops":
        for entry in dm["natops_variant"]["keys_only_in_mug"]:
            del layout[entry["key"]]
        layout.update({e["key"]: tuple(e["shape"]) for e in dm["natops_variant"]["keys_only_in_natops"]})
    return layout


@pytest.mark.parametrize("variant", ["mug", "natops"])
def test_full_size_layout_matches_released_checkpoints(variant):
    unet = full_size_unet(learned_null=variant == "natops")
    ours = unet.state_dict()
    mapping = official_unet_keys(unet)
    assert len(set(mapping.values())) == len(mapping), "two of our tensors map to one official key"
    produced = {"denoise_fn." + mapping[key]: tuple(tensor.shape) for key, tensor in ours.items()}
    produced.update({"denoise_fn." + key: (16,) for key in official_rotary_keys(unet)})
    expected = {key: shape for key, shape in reference_layout(variant).items() if key.startswith("denoise_fn.")}
    assert sorted(set(expected) - set(produced)) == [], "official keys our model does not fill"
    assert sorted(set(produced) - set(expected)) == [], "model tensors with no official key"
    assert produced == expected
    assert len(official_rotary_keys(unet)) == 10
    parameters = sum(p.numel() for p in unet.parameters())
    assert parameters == (42_129_859 if variant == "natops" else 42_731_203)
