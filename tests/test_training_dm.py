"""Stage-two training: targets from the frozen LFAE, label dropping, the loop, exact resume, samples and the cache.

Everything is tiny (32 px LFAE with 8x8 latents, a two-level U-Net of width 8, 4 frames, 3 labels), so the file
runs in seconds on a CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import Dataset

from lfdm.framing import SYNTHFACE_FRAMING
from lfdm.latents import flows_to_latents, latents_to_flows
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.models.unet3d import UNet3DOutput
from lfdm.testing import make_tiny_lfae
from lfdm.training.config import RunConfig, load_config
from lfdm.training.dm import (
    FlowDiffusionTrainingModel,
    build_label_encoder,
    build_training_model,
    build_unet,
    step_generator,
    train,
)
from lfdm.training.dm_targets import TargetCache, compute_targets, load_frozen_lfae

LABELS = ["smile", "frown", "blink"]
NUM_FRAMES = 4
TINY_UNET = dict(dim=8, dim_mults=[1, 2], attn_heads=2, attn_dim_head=8, spatial_attn_dim_head=8, init_kernel_size=3)


class Clips(Dataset):
    """Clip-view items: a smooth random image drifting right, one label per clip (label i % 3)."""

    labels = tuple(LABELS)

    def __init__(self, size: int = 4) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        generator = torch.Generator().manual_seed(index)
        image = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=generator), size=40, mode="bilinear")
        frames = [image[0, :, 4:36, 4 - k : 36 - k] for k in range(NUM_FRAMES)]  # shift by one pixel per frame
        label = LABELS[index % len(LABELS)]
        return {"video": torch.stack(frames, dim=1), "label": label, "label_index": LABELS.index(label), "identity": ""}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these models are tiny, and on a busy shared CPU two threads wait on each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def lfae_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = make_tiny_lfae(32)
    with torch.no_grad():  # a non-identity background motion, so the flows are not all the same
        model.background_predictor.fc.weight.normal_(std=0.05)
    folder = tmp_path_factory.mktemp("lfae")
    model.save_pretrained(folder)
    return folder


def make_config(output_dir: Path, lfae_dir: Path, *, dataset: str = "synthface", **train_dm) -> RunConfig:
    settings = dict(
        lfae=str(lfae_dir),
        output_dir=str(output_dir),
        batch_size=4,
        max_steps=6,
        learning_rate=1e-3,
        lr_milestones=[4],
        max_grad_norm=1.0,
        log_every=1,
        sample_every=0,
        checkpoint_every=3,
        keep_last=5,
        mixed_precision="no",
    )
    settings.update(train_dm)
    sections = {
        "data": {"dataset": dataset, "resolution": 32, "num_frames": NUM_FRAMES, "root": "unused"},
        "unet": dict(TINY_UNET),
        "labels": {"labels": LABELS, "embedding_dim": 16, "learned": True},
        "train_dm": settings,
    }
    return RunConfig.from_dict(sections, name="tiny")


def batch_of(dataset: Dataset, indices) -> dict:
    items = [dataset[i] for i in indices]
    return {"video": torch.stack([item["video"] for item in items]), "label": [item["label"] for item in items]}


# --- targets ---------------------------------------------------------------------------------------------------------


def test_targets_are_each_frames_flow_from_frame_zero(lfae_dir):
    lfae = load_frozen_lfae(lfae_dir)
    video = batch_of(Clips(), [0, 1])["video"]  # (2, 3, 4, 32, 32)
    targets = compute_targets(lfae, video)
    assert targets.latents.shape == (2, 3, NUM_FRAMES, 8, 8)
    assert torch.allclose(targets.features, lfae.encode(video[:, :, 0]), atol=1e-6)
    for frame in range(NUM_FRAMES):  # one batched call must equal one call per frame (b, f order kept)
        alone = lfae.estimate_flow(video[:, :, 0], video[:, :, frame])
        expected = flows_to_latents(alone.flow[:, None], alone.occlusion[:, 0, None])[:, :, 0]
        assert torch.allclose(targets.latents[:, :, frame], expected, atol=1e-5), f"frame {frame} differs"
    flows, occlusions = latents_to_flows(targets.latents)
    assert torch.allclose(flows_to_latents(flows, occlusions), targets.latents, atol=1e-6), "layout round trip"
    assert not lfae.training and not any(p.requires_grad for p in lfae.parameters()), "the LFAE must be frozen"


def test_lfae_is_found_in_a_run_folder_and_a_missing_one_says_what_to_pass(lfae_dir, tmp_path):
    run = tmp_path / "run"
    LatentFlowAutoencoder.from_pretrained(lfae_dir).save_pretrained(run / "model")
    assert isinstance(load_frozen_lfae(run), LatentFlowAutoencoder)
    with pytest.raises(FileNotFoundError, match="folder of a train-lfae run"):
        load_frozen_lfae(tmp_path / "nowhere")


# --- classifier-free guidance: label dropping ----------------------------------------------------------------------


class RecordingUNet(nn.Module):
    """Stands in for the U-Net: records which labels were dropped and predicts zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(residual_flow=False)
        self.dropped = []

    def forward(self, sample, timestep, image_features, label_embedding, drop_label=None):
        self.dropped.append(drop_label.clone())
        return UNet3DOutput(sample=torch.zeros_like(sample) + self.weight)


@pytest.mark.parametrize("probability", [0.1, 0.5])
def test_labels_are_dropped_at_the_configured_rate_and_reproducibly(probability):
    encoder = build_label_encoder({"labels": LABELS, "embedding_dim": 16})
    unet = RecordingUNet()
    model = FlowDiffusionTrainingModel(unet, encoder, probability)
    latents, features = torch.zeros(16, 3, 2, 4, 4), torch.zeros(16, 1, 4, 4)
    for micro_batch in range(250):
        model(latents, features, LABELS[:1] * 16, step_generator(0, micro_batch, 0, "cpu"))
    rate = torch.cat(unet.dropped).float().mean().item()
    assert abs(rate - probability) < 0.03, f"dropped {rate:.3f} of the labels, expected about {probability}"
    model(latents, features, LABELS[:1] * 16, step_generator(0, 7, 0, "cpu"))
    assert torch.equal(unet.dropped[-1], unet.dropped[7]), "the same micro-batch must drop the same labels"


def test_no_labels_are_dropped_with_probability_zero():
    unet = RecordingUNet()
    model = FlowDiffusionTrainingModel(unet, build_label_encoder({"labels": LABELS, "embedding_dim": 16}), 0.0)
    for micro_batch in range(20):
        model(
            torch.zeros(8, 3, 2, 4, 4),
            torch.zeros(8, 1, 4, 4),
            LABELS[:1] * 8,
            step_generator(0, micro_batch, 0, "cpu"),
        )
    assert not torch.cat(unet.dropped).any()


# --- the loop --------------------------------------------------------------------------------------------------------


def fixed_batch_loss(unet, encoder, lfae, clips: Dataset) -> float:
    """Mean loss over 8 fixed draws of (t, eps, dropped labels) on the 4 clips."""
    batch = batch_of(clips, range(4))
    targets = compute_targets(lfae, batch["video"])
    model = FlowDiffusionTrainingModel(unet, encoder, 0.1)
    with torch.no_grad():
        losses = [
            model(targets.latents, targets.features, batch["label"], step_generator(99, k, 0, "cpu")) for k in range(8)
        ]
    return float(torch.stack(losses).mean())


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(lfae_dir, tmp_path):
    config = make_config(
        tmp_path / "run", lfae_dir, max_steps=20, learning_rate=3e-3, ema_decay=0.0, checkpoint_every=0
    )
    lfae = load_frozen_lfae(lfae_dir)
    start = build_training_model(config, lfae)  # the initial weights `train` starts from
    initial = fixed_batch_loss(start.unet, start.label_encoder, lfae, Clips())

    run = train(config, dataset=Clips())
    from lfdm.pipeline import LFDMPipeline

    pipe = LFDMPipeline.from_pretrained(run / "model")
    trained = fixed_batch_loss(pipe.unet, pipe.label_encoder, lfae, Clips())
    assert trained < 0.8 * initial, f"20 steps on 4 clips should lower the loss: {initial:.4f} -> {trained:.4f}"
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 21)) and all(np.isfinite(r["loss"]) for r in records)
    assert (run / "loss_curve.png").is_file() and (run / "config.yaml").is_file()
    assert pipe.labels == LABELS and pipe.num_frames == NUM_FRAMES
    assert pipe.framing == SYNTHFACE_FRAMING and pipe.lfae.config.framing is not None, "the export records it"


def test_residual_v_prediction_run_exports_what_it_trained_and_warm_starts_another(lfae_dir, tmp_path):
    config = make_config(tmp_path / "run", lfae_dir, max_steps=2, checkpoint_every=0, prediction_type="v_prediction")
    config.unet = {**TINY_UNET, "residual_flow": True}
    model = build_training_model(config, load_frozen_lfae(lfae_dir))
    targets = compute_targets(load_frozen_lfae(lfae_dir), batch_of(Clips(), range(4))["video"])
    seen = []
    model.unet.register_forward_hook(lambda module, args, kwargs, output: seen.append(args[0]), with_kwargs=True)
    with torch.no_grad():
        model(targets.latents, targets.features, LABELS + LABELS[:1], step_generator(0, 0, 0, "cpu"))
    residual = flows_to_latents(*latents_to_flows(targets.latents), residual=True)
    timesteps = torch.randint(0, 1000, (4,), generator=_after_noise(targets.latents.shape))
    noise = torch.randn(targets.latents.shape, generator=step_generator(0, 0, 0, "cpu"))
    expected = model.noise_scheduler.add_noise(residual, noise, timesteps)
    torch.testing.assert_close(seen[0], expected, msg="the U-Net must see noised displacements, not absolute grids")

    run = train(config, dataset=Clips())
    from lfdm.pipeline import LFDMPipeline

    pipe = LFDMPipeline.from_pretrained(run / "model")
    assert pipe.unet.config.residual_flow and pipe.scheduler.config.prediction_type == "v_prediction"

    warm = make_config(tmp_path / "warm", lfae_dir, init_from=str(run / "model"))
    warm.unet = {**TINY_UNET, "residual_flow": True}
    started = build_training_model(warm, load_frozen_lfae(lfae_dir))
    for module, trained in ((started.unet, pipe.unet), (started.label_encoder, pipe.label_encoder)):
        expected = trained.state_dict()
        assert all(torch.equal(value, expected[key]) for key, value in module.state_dict().items())
    with pytest.raises(FileNotFoundError, match="model/ folder"):
        build_training_model(make_config(tmp_path / "x", lfae_dir, init_from=str(tmp_path)), load_frozen_lfae(lfae_dir))


def _after_noise(shape) -> torch.Generator:
    """`step_generator(0, 0, 0)` after the loss has drawn its noise: the state it draws the timesteps from."""
    generator = step_generator(0, 0, 0, "cpu")
    torch.randn(shape, generator=generator)
    return generator


def checkpoint_tensors(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Weights, optimiser, lr schedule and EMA state of an accelerate checkpoint folder, flattened by name."""
    flat = {f"model.{k}": v for k, v in load_file(checkpoint / "model.safetensors").items()}
    optimizer = torch.load(checkpoint / "optimizer.bin", weights_only=True)
    for index, state in optimizer["state"].items():
        flat.update({f"optimizer.{index}.{k}": torch.as_tensor(v) for k, v in state.items()})
    schedule = torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=False)
    flat["schedule.last_lr"] = torch.tensor(schedule["_last_lr"])
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=False)
    flat.update({f"ema.{k}": v for k, v in ema["weights"].items()})
    flat["ema.num_updates"] = torch.tensor(ema["num_updates"])
    return flat


def test_resume_is_exact(lfae_dir, tmp_path):
    straight = train(make_config(tmp_path / "straight", lfae_dir), dataset=Clips(6))
    interrupted = make_config(tmp_path / "resumed", lfae_dir, max_steps=3)
    train(interrupted, dataset=Clips(6))
    resumed = train(make_config(tmp_path / "resumed", lfae_dir), resume=str(tmp_path / "resumed"), dataset=Clips(6))

    def losses(run):
        return [(r["step"], r["loss"], r["lr"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]

    assert losses(resumed) == losses(straight), "the resumed run must log the very losses and lr of the straight one"
    expected, got = checkpoint_tensors(straight / "checkpoint-6"), checkpoint_tensors(resumed / "checkpoint-6")
    assert expected.keys() == got.keys()
    different = [name for name in expected if not torch.equal(expected[name], got[name])]
    assert not different, f"state after resuming differs from the straight run: {different[:5]}"
    assert json.loads((resumed / "checkpoint-6" / "training_state.json").read_text()) == {"step": 6}


def test_guided_samples_are_written_for_every_label(lfae_dir, tmp_path):
    from lfdm.video import probe_video

    config = make_config(
        tmp_path / "run", lfae_dir, max_steps=2, sample_every=2, sample_steps=2, sample_guidance_scale=2.0,
        checkpoint_every=0,
    )  # fmt: skip
    run = train(config, dataset=Clips())
    video, strip = run / "samples" / "step-0000002.mp4", run / "samples" / "step-0000002.png"
    assert video.is_file() and strip.is_file()
    assert probe_video(video).num_frames == NUM_FRAMES
    from PIL import Image

    height = Image.open(strip).size[1]
    assert height >= len(LABELS) * 2 * 64, "two rows of 64 px tiles (flow, occlusion) per label"


# --- cache -------------------------------------------------------------------------------------------------------


def test_cache_stores_the_targets_of_the_stream_and_is_reused(lfae_dir, tmp_path, monkeypatch):
    from accelerate import Accelerator

    from lfdm.training import dm_targets
    from lfdm.training.stream import SampleStream

    lfae = load_frozen_lfae(lfae_dir)
    config = make_config(tmp_path / "run", lfae_dir, dataset="folder")
    build = dict(labels=LABELS, seed=3, draws=2, batch_size=3, accelerator=Accelerator(cpu=True))
    cache = TargetCache.build(tmp_path / "cache", lfae, Clips(5), config.data, **build)
    assert len(cache) == 10, "two draws of five clips"
    stream = SampleStream(Clips(5), seed=3)
    for index in (0, 4, 9):
        item = stream[index]
        targets = compute_targets(lfae, item["video"][None])
        # the cache computes in batches of 3: equal up to float32 rounding, which depends on the batch size
        torch.testing.assert_close(cache[index]["latents"], targets.latents[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(cache[index]["features"], targets.features[0], rtol=1e-5, atol=1e-5)
        assert cache[index]["label"] == item["label"]

    monkeypatch.setattr(dm_targets, "_write_shard", lambda *args: pytest.fail("a complete cache is recomputed"))
    again = TargetCache.build(tmp_path / "cache", lfae, Clips(5), config.data, **build)
    assert again.folder == cache.folder
    with torch.no_grad():
        next(lfae.parameters()).add_(0.01)  # other LFAE weights -> another cache
    monkeypatch.undo()
    other = TargetCache.build(tmp_path / "cache", lfae, Clips(5), config.data, **build)
    assert other.folder != cache.folder


def test_training_from_the_cache_runs_and_fills_it(lfae_dir, tmp_path):
    config = make_config(tmp_path / "run", lfae_dir, dataset="folder", max_steps=2, cache_dir=str(tmp_path / "cache"))
    train(config, dataset=Clips(4))
    (folder,) = (tmp_path / "cache").iterdir()
    assert (folder / "manifest.json").is_file() and list(folder.glob("shard-*.safetensors"))


# --- configs and command ---------------------------------------------------------------------------------------


def test_config_mistakes_say_what_to_do(lfae_dir):
    lfae = load_frozen_lfae(lfae_dir)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['batchsize'\]"):
        RunConfig.from_dict({"train_dm": {"batchsize": 4}})
    with pytest.raises(ValueError, match="null_label_probability must be in"):
        RunConfig.from_dict({"train_dm": {"null_label_probability": 1.5}})
    with pytest.raises(ValueError, match="unet.feature_channels is 7 but"):
        build_unet({**TINY_UNET, "feature_channels": 7}, lfae, num_frames=NUM_FRAMES, label_dim=16)
    with pytest.raises(ValueError, match="embed-labels"):
        build_label_encoder({"labels": "mug", "learned": False})
    with pytest.raises(ValueError, match="no label list"):
        build_label_encoder({"learned": True})
    assert list(build_label_encoder({"labels": "mug"}).labels)[3] == "happiness", "a preset name gives its labels"
    assert list(build_label_encoder({}, default_labels=LABELS).labels) == LABELS, "else the data set's labels"


@pytest.mark.parametrize("name", ["synthface64", "mug128", "mhad128", "natops128"])
def test_shipped_configs_build_their_diffusion_models(name):
    config = load_config(Path(__file__).parents[1] / "lfdm" / "configs" / f"{name}.yaml")
    assert config.train_dm is not None and config.unet and config.labels, f"{name}.yaml lacks a stage-two section"
    with torch.device("meta"):  # sizes only: no memory, no init time
        lfae = LatentFlowAutoencoder(**config.lfae)
        if config.labels.get("learned", True):
            label_dim = build_label_encoder(config.labels).config.embedding_dim
        else:
            label_dim = config.labels.get("embedding_dim", 768)
        unet = build_unet(config.unet, lfae, num_frames=config.data.num_frames, label_dim=label_dim)
    assert unet.config.sample_size == lfae.latent_size


def test_command_trains_and_resumes(lfae_dir, tmp_path, monkeypatch):
    from lfdm.cli import main
    from lfdm.training.config import save_config

    path = save_config(
        make_config(tmp_path / "unused", lfae_dir, max_steps=1, checkpoint_every=1), tmp_path / "tiny.yaml"
    )
    run = tmp_path / "cli-run"
    monkeypatch.setattr("lfdm.training.stream.training_dataset", lambda *args, **kwargs: Clips())
    monkeypatch.setattr("lfdm.training.dm.training_dataset", lambda *args, **kwargs: Clips())
    assert main(["train-dm", "--config", str(path), "--lfae", str(lfae_dir), "--output-dir", str(run)]) == 0
    assert (run / "checkpoint-1").is_dir() and (run / "model" / "unet").is_dir()
    assert main(["train-dm", "--resume", str(run), "--max-steps", "2"]) == 0, "resume needs neither --config nor --lfae"
    assert (run / "checkpoint-2").is_dir()


def test_a_diffusion_run_checks_the_autoencoder_it_loads(lfae_dir, tmp_path):
    config = make_config(tmp_path / "run", lfae_dir)
    config.lfae = {"image_size": 32, "num_regions": 99}
    with pytest.raises(ValueError, match="num_regions: 99 here"):
        train(config, dataset=Clips())
    saved = train(make_config(tmp_path / "saved", lfae_dir, max_steps=1), dataset=Clips())
    assert "lfae" not in load_config(saved / "config.yaml").to_dict("dm"), "a diffusion run saves its own sections"
    assert not load_config(saved / "config.yaml").lfae
