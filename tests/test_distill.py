"""Sampler distillation (`python -m lfdm distill`): the teacher's pool, the loss, the export and resume."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from lfdm.cli import main as cli_main
from lfdm.latents import latents_to_flows
from lfdm.pipeline import LFDMPipeline
from lfdm.schedulers import MODEL_DEFAULT_STEPS_KEY, make_sampler, set_default_steps
from lfdm.testing import make_test_image, make_tiny_pipeline
from lfdm.training import distill
from lfdm.training.config import DistillTrainConfig, RunConfig
from lfdm.training.distill import DistillationPool, StudentSampler, sample_latents, student_scheduler
from lfdm.training.stream import training_dataset

CONFIG = (
    "data: {dataset: synthface, resolution: 32, num_frames: 2, num_identities: 4, num_workers: 0}\n"
    "train_distill: {num_images: 2, pool_batch_size: 4, max_steps: 2, batch_size: 2, learning_rate: 1.0e-3,"
    " sample_every: 2, checkpoint_every: 1, log_every: 1}\n"
)


def _teacher():
    """The tiny pipeline made like the shipped one: it predicts x_0 and samples with DPM-Solver++ in 4 steps."""
    pipe = make_tiny_pipeline(scheduler="dpmsolver")
    pipe.scheduler = set_default_steps(make_sampler("dpmsolver", "sample"), 4)
    return pipe


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("teacher")
    _teacher().save_pretrained(folder)
    return folder


def _train_config(**changes) -> DistillTrainConfig:
    return DistillTrainConfig(**{"num_images": 2, "pool_batch_size": 4, **changes})


def test_the_sampler_loop_gives_what_the_pipeline_samples():
    teacher = _teacher()
    features = teacher.lfae.encode(teacher.processor.preprocess(make_test_image(48), face="none")[1])
    embeddings = teacher.encode_labels(["smile"])
    flows = teacher.sample_flows(
        features, embeddings, num_frames=4, num_inference_steps=None, guidance_scale=1.0,
        generator=torch.Generator().manual_seed(3),
    ).flows  # fmt: skip
    noise = torch.randn((1, 3, 4, 8, 8), generator=torch.Generator().manual_seed(3))
    latents = sample_latents(teacher.unet, teacher.scheduler, noise, features, embeddings, num_steps=4)
    ours, _ = latents_to_flows(latents, residual=teacher.unet.config.residual_flow)
    torch.testing.assert_close(ours, flows, msg="the distillation sampler must be the pipeline's own loop")


def test_the_pool_is_made_once_and_read_back_from_the_cache(tmp_path, teacher_dir, monkeypatch):
    teacher = distill.load_teacher(teacher_dir)
    pictures = training_dataset(RunConfig.from_dict({"data": {"resolution": 32, "num_frames": 2}}).data, view="clip")
    cache = tmp_path / "pool.pt"
    pool = DistillationPool(teacher, pictures, _train_config(), teacher_path=str(teacher_dir), cache_file=cache)
    assert cache.is_file()
    assert len(pool) == 2 * 3, "every picture with every label"
    item = pool[4]
    assert item["noise"].shape == item["target"].shape == (3, 4, 8, 8)
    assert item["features"].shape[-2:] == (8, 8) and item["embedding"].shape == (16,)
    torch.testing.assert_close(item["features"], pool[3]["features"], msg="examples 3..5 share the second picture")
    assert not torch.equal(item["target"], pool[3]["target"]), "another label samples other flows"
    # the targets are the teacher's 4-step samples from the stored noise
    again = sample_latents(
        teacher.unet, teacher.scheduler, item["noise"][None], item["features"][None], item["embedding"][None],
        num_steps=4,
    )  # fmt: skip
    torch.testing.assert_close(again[0], item["target"])

    def no_teacher(*args, **kwargs):
        raise AssertionError("the pool must come from the cache")

    monkeypatch.setattr(distill, "make_pool", no_teacher)
    cached = DistillationPool(teacher, pictures, _train_config(), teacher_path=str(teacher_dir), cache_file=cache)
    torch.testing.assert_close(cached[4]["target"], item["target"])
    with pytest.raises(AssertionError, match="from the cache"):  # another teacher setting is not taken from it
        DistillationPool(teacher, pictures, _train_config(teacher_steps=2), teacher_path=str(teacher_dir),
                         cache_file=cache)  # fmt: skip


@pytest.mark.parametrize("steps", [1, 2])
def test_a_few_steps_lower_the_distillation_loss_on_a_fixed_batch(steps):
    torch.manual_seed(0)
    teacher = _teacher()
    batch = 3
    noise = torch.randn(batch, 3, 4, 8, 8)
    with torch.no_grad():  # the pool holds plain tensors
        features = teacher.lfae.encode(torch.rand(batch, 3, 32, 32))
        embeddings = teacher.encode_labels(["smile", "frown", "surprise"])
        target = sample_latents(teacher.unet, teacher.scheduler, noise, features, embeddings, num_steps=4)
    student = StudentSampler(
        copy.deepcopy(teacher.unet).train(), student_scheduler(teacher.scheduler.config, "dpmsolver", steps), steps
    )
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = student(noise, features, embeddings, target)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] > 0, "the teacher's 4 steps and the untrained student's k steps differ"
    assert losses[-1] < 0.7 * losses[0], f"distilling did not lower the loss: {losses}"


def test_the_student_scheduler_keeps_the_schedule_and_names_only_its_own_default():
    teacher = _teacher()
    scheduler = student_scheduler(teacher.scheduler.config, "ddim", 2)
    assert scheduler.config[MODEL_DEFAULT_STEPS_KEY] == {"ddim": 2}, "the teacher's dpmsolver: 4 is not the student's"
    assert scheduler.config.prediction_type == "sample"
    torch.testing.assert_close(scheduler.alphas_cumprod, teacher.scheduler.alphas_cumprod)


def test_the_config_section_checks_its_values_and_is_what_a_distill_run_saves():
    with pytest.raises(ValueError, match="train_distill.sampler"):
        RunConfig.from_dict({"train_distill": {"sampler": "ddpm"}})
    with pytest.raises(ValueError, match="train_distill.steps"):
        RunConfig.from_dict({"train_distill": {"steps": 0}})
    config = RunConfig.from_dict({"data": {"resolution": 32}, "train_distill": {"steps": 2, "teacher": "t"}})
    saved = config.to_dict("distill")
    assert sorted(saved) == ["data", "train_distill"] and saved["train_distill"]["steps"] == 2
    assert RunConfig.from_dict(saved).train_distill == config.train_distill


def test_a_teacher_that_predicts_noise_is_refused(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path / "epsilon")  # the tiny default predicts epsilon
    with pytest.raises(ValueError, match="prediction_type 'epsilon'"):
        distill.load_teacher(tmp_path / "epsilon")
    with pytest.raises(FileNotFoundError, match="not a pipeline folder"):
        distill.load_teacher(tmp_path)


def test_distill_runs_exports_a_k_step_pipeline_and_resumes(tmp_path, teacher_dir):
    config, run, cache = tmp_path / "distill.yaml", tmp_path / "run", tmp_path / "pool"
    config.write_text(CONFIG)
    assert cli_main(["distill", "--config", str(config), "--teacher", str(teacher_dir), "--steps", "2",
                     "--output-dir", str(run), "--cache-dir", str(cache)]) == 0  # fmt: skip
    assert list(cache.glob("pool-*.pt")), "the pool is cached"
    assert (run / "samples" / "step-0000002.png").is_file()
    scheduler_config = json.loads((run / "model" / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler_config[MODEL_DEFAULT_STEPS_KEY] == {"dpmsolver": 2}
    student = LFDMPipeline.from_pretrained(run / "model")
    student.set_progress_bar_config(disable=True)
    assert student.default_num_inference_steps == 2
    teacher_weights = LFDMPipeline.from_pretrained(teacher_dir).unet.state_dict()
    assert any(not torch.equal(value, teacher_weights[name]) for name, value in student.unet.state_dict().items()), (
        "the student was trained"
    )
    steps_run = []
    frames = student(
        make_test_image(48), "smile", face="none",
        callback_on_step_end=lambda pipe, index, timestep, tensors: steps_run.append(index) or {},
    ).frames  # fmt: skip
    assert frames.shape == (1, 4, 32, 32, 3) and steps_run == [0, 1], "the export samples at its 2 steps by default"
    assert "2-step student" in (run / "model" / "README.md").read_text()

    first = {name: value.clone() for name, value in student.unet.state_dict().items()}
    assert cli_main(["distill", "--resume", str(run), "--max-steps", "3"]) == 0
    state = json.loads((run / "log.jsonl").read_text().splitlines()[-1])
    assert state["step"] == 3, "the resumed run went on from step 2 to 3"
    resumed = LFDMPipeline.from_pretrained(run / "model").unet.state_dict()
    assert any(not torch.equal(first[name], resumed[name]) for name in first), "the resumed run trained on"
    assert cli_main(["distill", "--resume", str(run), "--steps", "1", "--max-steps", "4"]) == 1
