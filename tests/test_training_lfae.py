"""Stage-one training: the loss falls, runs resume exactly, and a run folder holds what it promises."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch.utils.data import Dataset

from lfdm.cli import main
from lfdm.framing import SYNTHFACE_FRAMING, ModelFraming
from lfdm.models import LatentFlowAutoencoder
from lfdm.testing import tiny_lfae_config
from lfdm.training.config import RunConfig
from lfdm.training.lfae import train
from lfdm.training.logs import read_jsonl

TINY_LFAE = tiny_lfae_config(width=8, num_regions=4)


class ShiftedPairs(Dataset):
    """Four fixed pairs (the driving frame is the reference shifted by two pixels): with a batch of four, every
    step sees the same batch, so the reconstruction loss must fall."""

    def __init__(self):
        generator = torch.Generator().manual_seed(0)
        smooth = torch.nn.functional.avg_pool2d(torch.rand(4, 3, 36, 36, generator=generator), 5, stride=1)
        self.reference = smooth
        self.driving = torch.roll(smooth, shifts=2, dims=-1)

    def __len__(self):
        return 4

    def __getitem__(self, index):
        return {
            "reference": self.reference[index],
            "driving": self.driving[index],
            "label": "shift",
            "label_index": 0,
            "identity": "0",
        }


def tiny_config(output_dir, **train_overrides) -> RunConfig:
    train_lfae = {
        "output_dir": str(output_dir),
        "batch_size": 4,
        "max_steps": 8,
        "learning_rate": 1e-3,
        "lr_milestones": [6],
        "log_every": 1,
        "sample_every": 4,
        "checkpoint_every": 2,
        "keep_last": 2,
        "num_samples": 2,
    }
    train_lfae.update(train_overrides)
    return RunConfig.from_dict({"data": {"resolution": 32}, "lfae": TINY_LFAE, "train_lfae": train_lfae})


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "uninterrupted"
    return train(tiny_config(run_dir), dataset=ShiftedPairs())


def reconstruction_losses(run_dir):
    return [record["l1"] + record["ssim"] for record in read_jsonl(run_dir / "log.jsonl")]


def test_loss_falls_on_a_repeated_batch(uninterrupted_run):
    losses = reconstruction_losses(uninterrupted_run)
    assert len(losses) == 8
    assert sum(losses[-2:]) / 2 < 0.9 * sum(losses[:2]) / 2, f"reconstruction loss did not fall: {losses}"


def test_run_folder_holds_config_logs_samples_checkpoints_and_model(uninterrupted_run):
    run = uninterrupted_run
    records = read_jsonl(run / "log.jsonl")
    assert [r["step"] for r in records] == list(range(1, 9))
    assert {"loss", "l1", "ssim", "equivariance_shift", "equivariance_affine", "lr"} <= set(records[0])
    assert records[-1]["lr"] == pytest.approx(1e-4), "MultiStepLR decays x0.1 at step 6"
    assert (run / "loss_curve.png").stat().st_size > 0
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step-0000004.png", "step-0000008.png"]
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-6", "checkpoint-8"], "keep_last 2"
    checkpoint = run / "checkpoint-8"
    for name in ("model.safetensors", "optimizer.bin", "random_states_0.pkl", "model/config.json"):
        assert (checkpoint / name).is_file(), f"{name} missing from the checkpoint"
    assert load_file(checkpoint / "model" / "diffusion_pytorch_model.safetensors")
    assert yaml.safe_load((run / "config.yaml").read_text())["lfae"] == TINY_LFAE
    model = LatentFlowAutoencoder.from_pretrained(run / "model")
    assert model.config.image_size == 32
    assert ModelFraming.from_config(model.config.framing) == SYNTHFACE_FRAMING, "SynthFace's framing, measured"


def test_resume_continues_from_the_same_step_with_the_same_state(uninterrupted_run, tmp_path):
    interrupted = tmp_path / "interrupted"
    train(tiny_config(interrupted, max_steps=4), dataset=ShiftedPairs())
    train(tiny_config(interrupted), resume=str(interrupted / "checkpoint-4"), dataset=ShiftedPairs())

    steps = [r["step"] for r in read_jsonl(interrupted / "log.jsonl")]
    assert steps == list(range(1, 9)), "the resumed run logs steps 5..8 after the first run's 1..4"
    assert reconstruction_losses(interrupted) == reconstruction_losses(uninterrupted_run), "same losses, bit for bit"

    straight = torch.load(uninterrupted_run / "checkpoint-8" / "optimizer.bin", weights_only=True)
    resumed = torch.load(interrupted / "checkpoint-8" / "optimizer.bin", weights_only=True)
    assert straight["state"].keys() == resumed["state"].keys()
    for index, state in straight["state"].items():
        for name, value in state.items():
            assert torch.equal(value, resumed["state"][index][name]), f"optimiser state {index}.{name} differs"
    weights = load_file(uninterrupted_run / "model" / "diffusion_pytorch_model.safetensors")
    resumed_weights = load_file(interrupted / "model" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(weights[k], resumed_weights[k]) for k in weights)


def test_a_new_run_refuses_a_folder_that_holds_a_run(uninterrupted_run):
    with pytest.raises(ValueError, match="--resume"):
        train(tiny_config(uninterrupted_run), dataset=ShiftedPairs())


def write_config(path, **train_overrides):
    config = tiny_config(path.parent / "run", **train_overrides)
    sections = config.to_dict()
    sections["data"] = {"dataset": "synthface", "resolution": 32, "num_frames": 4}
    path.write_text(yaml.safe_dump(sections))
    return path


def test_command_line_trains_on_synthface_and_resumes_a_run(tmp_path, capsys):
    config = write_config(tmp_path / "tiny.yaml", max_steps=2, sample_every=0, checkpoint_every=2)
    assert main(["train-lfae", "--config", str(config), "--output-dir", str(tmp_path / "cli")]) == 0
    assert "trained autoencoder" in capsys.readouterr().out
    assert main(["train-lfae", "--resume", str(tmp_path / "cli"), "--max-steps", "3"]) == 0
    assert [r["step"] for r in read_jsonl(tmp_path / "cli" / "log.jsonl")] == [1, 2, 3]


def test_command_line_reports_user_errors(tmp_path, capsys):
    assert main(["train-lfae"]) == 1
    assert "--config" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"train_lfae": {"batchsize": 2}}))
    assert main(["train-lfae", "--config", str(bad)]) == 1
    assert "valid keys" in capsys.readouterr().err


def test_bf16_mixed_precision_learns_like_float32(tmp_path, uninterrupted_run):
    """bf16 autocast (the default on a GPU) on the repeated batch: the loss falls as in float32. With the region
    statistics or SSIM in bfloat16 it wandered between 4 and 24 instead."""
    config = tiny_config(tmp_path / "bf16", mixed_precision="bf16", sample_every=0, checkpoint_every=0)
    mixed = reconstruction_losses(train(config, dataset=ShiftedPairs()))
    exact = reconstruction_losses(uninterrupted_run)
    assert max(mixed[-2:]) < 0.5 * sum(mixed[:2]) / 2, f"bf16 loss did not fall: {mixed}"
    assert max(mixed[-2:]) < 1.5 * max(exact[-2:]), f"bf16 {mixed} vs float32 {exact}"


def test_occlusion_saturation_term_brings_a_saturated_head_back(tmp_path):
    """An occlusion head stuck at sigmoid(30) = 1 gets no gradient from the reconstruction; the saturation term
    pulls its logits back towards +-limit."""
    saturated = LatentFlowAutoencoder(**TINY_LFAE)
    with torch.no_grad():
        saturated.flow_predictor.occlusion.bias.fill_(30.0)
    saturated.save_pretrained(tmp_path / "saturated")
    overrides = {"max_steps": 6, "sample_every": 0, "checkpoint_every": 0, "learning_rate": 0.02}
    config = tiny_config(
        tmp_path / "run", init_from=str(tmp_path / "saturated"), occlusion_logit_weight=1.0, **overrides
    )
    run = train(config, dataset=ShiftedPairs())
    saturation = [record["occlusion_saturation"] for record in read_jsonl(run / "log.jsonl")]
    assert saturation[0] > 100 and saturation[-1] < 0.9 * saturation[0], saturation
    trained = LatentFlowAutoencoder.from_pretrained(run / "model")
    assert trained.flow_predictor.occlusion.bias.item() < 30.0


def test_optional_loss_terms_train_and_are_logged(tmp_path):
    overrides = {"max_steps": 2, "sample_every": 0, "checkpoint_every": 0}
    run = train(tiny_config(tmp_path / "run", l1_motion_weight=5.0, region_separation_weight=1.0, **overrides),
                dataset=ShiftedPairs())  # fmt: skip
    records = read_jsonl(run / "log.jsonl")
    assert len(records) == 2 and all(record["region_separation"] > 0 and record["l1"] > 0 for record in records)


def test_config_dataclass_replace_keeps_validation():
    with pytest.raises(ValueError, match="max_steps must be > 0"):
        dataclasses.replace(tiny_config("x").train_lfae, max_steps=0)


def test_init_from_starts_with_the_given_weights(tmp_path):
    from lfdm.training.lfae import build_model

    torch.manual_seed(1)
    LatentFlowAutoencoder(**TINY_LFAE).save_pretrained(tmp_path / "start")
    expected = LatentFlowAutoencoder.from_pretrained(tmp_path / "start").state_dict()
    model = build_model(tiny_config(tmp_path / "run", init_from=str(tmp_path / "start")))
    assert all(torch.equal(value, expected[key]) for key, value in model.state_dict().items())
    with pytest.raises(FileNotFoundError, match="save_pretrained"):
        build_model(tiny_config(tmp_path / "run", init_from=str(tmp_path / "missing")))


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_init_from_carries_the_weights_across_a_new_region_scale(tmp_path, scale):
    """A warm start with another `region_scale_factor`: every learned weight comes over; the anti-aliasing kernel,
    which follows from the scale, stays the new config's (at scale 1 there is none, and the source's is dropped)."""
    from lfdm.training.lfae import build_model

    torch.manual_seed(2)
    LatentFlowAutoencoder(**TINY_LFAE).save_pretrained(tmp_path / "start")
    start = LatentFlowAutoencoder.from_pretrained(tmp_path / "start")
    config = tiny_config(tmp_path / "run", init_from=str(tmp_path / "start"))
    config.lfae = {**TINY_LFAE, "region_scale_factor": scale}
    model = build_model(config)
    fresh = LatentFlowAutoencoder(**config.lfae)
    assert all(torch.equal(value, start.get_parameter(name)) for name, value in model.named_parameters())
    kernel = "region_predictor.down.weight"
    assert kernel in start.state_dict()
    if scale == 1.0:
        assert kernel not in model.state_dict()
    else:
        assert torch.equal(model.state_dict()[kernel], fresh.state_dict()[kernel])
        assert model.state_dict()[kernel].shape != start.state_dict()[kernel].shape


def test_init_from_with_fewer_regions_splits_them_and_computes_the_same_motion(tmp_path):
    """More regions than `init_from`: the old regions are kept, each new one starts as a copy of an old one, and
    the flow predictor shares the old motions among the copies, so the flow and occlusion map stay the source's."""
    from lfdm.training.lfae import build_model

    torch.manual_seed(3)
    LatentFlowAutoencoder(**TINY_LFAE).save_pretrained(tmp_path / "start")
    start = LatentFlowAutoencoder.from_pretrained(tmp_path / "start").eval()
    config = tiny_config(tmp_path / "run", init_from=str(tmp_path / "start"))
    config.lfae = {**TINY_LFAE, "num_regions": 6}
    model = build_model(config).eval()
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        old, new = start.region_predictor(images), model.region_predictor(images)
        assert new.shift.shape == (2, 6, 2) and torch.equal(new.shift[:, :4], old.shift)
        assert torch.allclose(new.shift[:, 4:], old.shift[:, :2], atol=1e-2), "regions 5, 6 copy regions 1, 2"
        assert not torch.equal(new.shift[:, 4:], old.shift[:, :2]), "with a little noise, so the copies can part"
        source, grown = start.estimate_flow(images[:1], images[1:]), model.estimate_flow(images[:1], images[1:])
    assert torch.allclose(grown.flow, source.flow, atol=1e-3)
    assert torch.allclose(grown.occlusion, source.occlusion, atol=1e-3)

    config.lfae = {**TINY_LFAE, "num_regions": 3}
    with pytest.raises(ValueError, match="regions can be added to a model, not removed"):
        build_model(config)
