"""LFDMPipeline: shapes, determinism, batching, guidance, callbacks, trace, interrupt, saving and loading."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import huggingface_hub.constants
import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from lfdm.latents import flows_to_latents, identity_grid, latents_to_flows
from lfdm.pipeline import LFDMPipeline, load_pipeline
from lfdm.schedulers import make_scheduler
from lfdm.testing import TINY_LABELS, make_tiny_pipeline

STEPS = 2


@pytest.fixture
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 for this test; huggingface_hub reads the variable at import, so set its constant too."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def count_unet_passes(pipe) -> list[int]:
    """Record the batch size of every U-Net forward call."""
    batches = []
    pipe.unet.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    return batches


def test_outputs_have_the_documented_shapes_and_ranges(tiny_pipeline, tiny_image):
    out = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded())
    frames, size, latent = tiny_pipeline.num_frames, tiny_pipeline.image_size, tiny_pipeline.latent_size
    assert out.frames.shape == (1, frames, size, size, 3) and out.frames.dtype == np.float32
    assert out.warped.shape == (1, frames, size, size, 3)
    assert out.flows.shape == (1, frames, latent, latent, 2)
    assert out.occlusions.shape == (1, frames, latent, latent)
    assert out.labels == ["smile"] and out.trace_flows is None and not out.interrupted
    for name in ("frames", "warped", "occlusions"):
        values = getattr(out, name)
        assert values.min() >= 0 and values.max() <= 1, f"{name} must be in [0, 1]"


def test_same_seed_same_video_other_seed_other_video(tiny_pipeline, tiny_image):
    first = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(3))
    again = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(3))
    other = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(4))
    np.testing.assert_array_equal(first.frames, again.frames)
    np.testing.assert_array_equal(first.flows, again.flows)
    assert np.abs(first.flows - other.flows).max() > 1e-3, "another seed should give other flows"


def test_one_video_per_label_batched_like_single_calls(tiny_pipeline, tiny_image):
    labels = list(TINY_LABELS)
    batches = count_unet_passes(pipe := make_tiny_pipeline())
    pipe.set_progress_bar_config(disable=True)
    out = pipe(tiny_image, labels, num_inference_steps=STEPS, generator=[seeded(0) for _ in labels])
    assert out.frames.shape[0] == len(labels) and out.labels == labels
    assert batches == [len(labels)] * STEPS, "all labels share one U-Net call per step"
    single = tiny_pipeline(tiny_image, labels[1], num_inference_steps=STEPS, generator=seeded(0))
    np.testing.assert_allclose(out.flows[1], single.flows[0], atol=1e-4)  # batching reorders float sums
    np.testing.assert_allclose(out.frames[1], single.frames[0], atol=1e-4)
    assert np.abs(out.flows[0] - out.flows[1]).max() > 1e-3, "different labels should move differently"


@pytest.mark.parametrize(("guidance_scale", "passes_per_step"), [(1.0, 1), (2.0, 2)])
def test_guidance_one_pass_per_step_at_one_and_two_otherwise(tiny_image, guidance_scale, passes_per_step):
    pipe = make_tiny_pipeline()
    batches = count_unet_passes(pipe)
    pipe(tiny_image, ["smile", "frown"], num_inference_steps=3, guidance_scale=guidance_scale)
    # one forward call per step; with guidance it carries [null; cond], i.e. two passes of the 2 labels
    assert batches == [2 * passes_per_step] * 3


def test_guidance_changes_the_motion_and_zero_ignores_the_label(tiny_image):
    pipe = make_tiny_pipeline()
    plain = pipe(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded())
    guided = pipe(tiny_image, "smile", num_inference_steps=STEPS, guidance_scale=3.0, generator=seeded())
    assert np.abs(plain.flows - guided.flows).max() > 1e-4
    unconditional = pipe(tiny_image, ["smile", "frown"], num_inference_steps=STEPS, guidance_scale=0.0,
                         generator=[seeded(), seeded()])  # fmt: skip
    np.testing.assert_allclose(unconditional.flows[0], unconditional.flows[1], atol=1e-5)


def test_callback_runs_once_per_step_with_the_predicted_clean_sample(tiny_pipeline, tiny_image):
    calls = []

    def callback(pipe, step_index, timestep, tensors):
        calls.append((step_index, int(timestep), {name: value.clone() for name, value in tensors.items()}))

    out = tiny_pipeline(
        tiny_image, ["smile", "frown"], num_inference_steps=3, generator=seeded(), return_step_trace=True,
        callback_on_step_end=callback, callback_on_step_end_tensor_inputs=["latents", "pred_original_sample"],
    )  # fmt: skip
    assert [index for index, _, _ in calls] == [0, 1, 2]
    assert [t for _, t, _ in calls] == out.trace_timesteps.tolist()
    shape = (2, 3, tiny_pipeline.num_frames, tiny_pipeline.latent_size, tiny_pipeline.latent_size)
    for step, (_, _, tensors) in enumerate(calls):
        assert set(tensors) == {"latents", "pred_original_sample"}
        assert tensors["pred_original_sample"].shape == shape
        flows, occlusions = latents_to_flows(tensors["pred_original_sample"])
        np.testing.assert_allclose(out.trace_flows[step], flows.numpy(), atol=1e-6)
        np.testing.assert_allclose(out.trace_occlusions[step], occlusions.numpy(), atol=1e-6)
    np.testing.assert_allclose(out.flows, latents_to_flows(calls[-1][2]["latents"])[0].numpy(), atol=1e-6)


@pytest.mark.parametrize("name", ["ddpm", "ddim", "dpmsolver", "unipc"])
def test_every_scheduler_gives_callbacks_a_thresholded_clean_sample(tiny_image, name):
    pipe = make_tiny_pipeline()
    pipe.scheduler = make_scheduler(name, base_config=pipe.scheduler.config)
    seen = []
    out = pipe(
        tiny_image, "frown", num_inference_steps=3, generator=seeded(), return_step_trace=True,
        callback_on_step_end=lambda p, i, t, k: seen.append(k["pred_original_sample"]),
        callback_on_step_end_tensor_inputs=["pred_original_sample"],
    )  # fmt: skip
    assert len(seen) == 3 and out.trace_flows.shape[0] == 3
    # dynamic thresholding divides by s >= 1 after clamping to [-s, s], so the clean sample lies in [-1, 1]
    assert all(x0.abs().max() <= 1 + 1e-6 for x0 in seen)


def test_callback_can_replace_the_latents(tiny_pipeline, tiny_image):
    frames, latent = tiny_pipeline.num_frames, tiny_pipeline.latent_size
    still = identity_grid(latent, latent).expand(1, frames, latent, latent, 2)
    replacement = flows_to_latents(still, torch.ones(1, frames, latent, latent))

    def freeze_on_last_step(pipe, step_index, timestep, tensors):
        return {"latents": replacement} if step_index == STEPS - 1 else {}

    out = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, callback_on_step_end=freeze_on_last_step)
    np.testing.assert_allclose(out.flows[0], still[0].numpy(), atol=1e-6)
    assert out.occlusions.min() == 1.0


def test_residual_latents_are_displacements_from_the_identity_grid():
    flows = identity_grid(4, 4).expand(2, 3, 4, 4, 2) + 0.1 * torch.randn(2, 3, 4, 4, 2)
    occlusions = torch.rand(2, 3, 4, 4)
    latents = flows_to_latents(flows, occlusions, residual=True)
    torch.testing.assert_close(
        latents[:, :2], flows_to_latents(flows, occlusions)[:, :2] - identity_grid(4, 4).permute(2, 0, 1)[:, None]
    )
    back_flows, back_occlusions = latents_to_flows(latents, residual=True)
    torch.testing.assert_close(back_flows, flows)
    torch.testing.assert_close(back_occlusions, occlusions)


def test_a_residual_flow_unet_makes_zero_latents_a_still_video(tiny_image):
    pipe = make_tiny_pipeline()
    pipe.unet.register_to_config(residual_flow=True)
    frames, latent = pipe.num_frames, pipe.latent_size
    zeros = torch.zeros(1, 3, frames, latent, latent)
    zeros[:, 2] = 1  # fully visible

    def freeze(pipe, step_index, timestep, tensors):
        return {"latents": zeros} if step_index == STEPS - 1 else {}

    out = pipe(tiny_image, "smile", num_inference_steps=STEPS, callback_on_step_end=freeze)
    np.testing.assert_allclose(out.flows[0], identity_grid(latent, latent).expand(frames, -1, -1, -1), atol=1e-6)


def test_a_frame_position_model_chains_clips_for_longer_videos(tiny_image):
    pipe = make_tiny_pipeline()
    pipe.unet = type(pipe.unet).from_config({**pipe.unet.config, "frame_embedding": True}).eval()
    lengths = []
    pipe.unet.register_forward_hook(lambda module, args, output: lengths.append(args[0].shape[2]))
    out = pipe(tiny_image, "smile", num_inference_steps=2, num_frames=pipe.num_frames + 1)
    assert out.frames.shape[1] == pipe.num_frames + 1
    assert set(lengths) == {pipe.num_frames}, "the U-Net never sees more frames than it learned positions for"


def test_interrupt_stops_sampling_and_decodes_the_last_clean_estimate(tiny_image):
    pipe = make_tiny_pipeline()
    seen = []

    def stop(pipe, step_index, timestep, tensors):
        seen.append(tensors["pred_original_sample"])
        pipe.interrupt = True

    out = pipe(
        tiny_image, "smile", num_inference_steps=4, callback_on_step_end=stop,
        callback_on_step_end_tensor_inputs=["pred_original_sample"],
    )  # fmt: skip
    assert len(seen) == 1 and out.interrupted
    np.testing.assert_allclose(out.flows, latents_to_flows(seen[0])[0].numpy(), atol=1e-6)
    assert not pipe(tiny_image, "smile", num_inference_steps=2).interrupted, "the flag resets on the next call"


def test_chunked_decoding_matches_one_call(tiny_image, monkeypatch):
    pipe = make_tiny_pipeline()
    whole = pipe(tiny_image, ["smile", "frown"], num_inference_steps=STEPS, generator=seeded())
    flows_per_call = []
    decode = pipe.lfae.decode

    def counting_decode(reference, flow, occlusion, features=None):
        flows_per_call.append(len(flow))
        return decode(reference, flow, occlusion, features=features)

    monkeypatch.setattr(pipe.lfae, "decode", counting_decode)
    encodings = []
    encode = pipe.lfae.generator.encode_pyramid
    monkeypatch.setattr(pipe.lfae.generator, "encode_pyramid", lambda image: encodings.append(1) or encode(image))
    chunked = pipe(tiny_image, ["smile", "frown"], num_inference_steps=STEPS, generator=seeded(), decode_chunk_size=3)
    frames = 2 * pipe.num_frames
    assert flows_per_call == [3] * (frames // 3) + ([frames % 3] if frames % 3 else [])
    assert len(encodings) == 1, "the reference image is encoded once for all labels and chunks"
    np.testing.assert_allclose(chunked.frames, whole.frames, atol=1e-5)
    np.testing.assert_allclose(chunked.warped, whole.warped, atol=1e-5)


def test_tensor_output_and_tuple_output_match_numpy_output(tiny_pipeline, tiny_image):
    as_numpy = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded())
    as_tensor = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(), output_type="pt")
    as_tuple = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(), return_dict=False)
    assert isinstance(as_tensor.frames, torch.Tensor)
    np.testing.assert_array_equal(as_tensor.frames.numpy(), as_numpy.frames)
    assert len(as_tuple) == 4
    for array, name in zip(as_tuple, ("frames", "warped", "flows", "occlusions"), strict=True):
        np.testing.assert_array_equal(array, getattr(as_numpy, name))


def test_num_frames_can_be_overridden_per_call(tiny_pipeline, tiny_image):
    out = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, num_frames=2)
    assert out.frames.shape[1] == 2 and out.flows.shape[1] == 2


def test_save_and_load_round_trip_offline(tiny_pipeline, tiny_pipeline_dir, tiny_image, offline):
    index = json.loads((tiny_pipeline_dir / "model_index.json").read_text())
    assert index["_class_name"] == "LFDMPipeline"
    assert index["unet"] == ["lfdm.models.unet3d", "FlowUNet3D"]
    loaded = LFDMPipeline.from_pretrained(tiny_pipeline_dir)
    loaded.set_progress_bar_config(disable=True)
    assert loaded.labels == tiny_pipeline.labels and loaded.num_frames == tiny_pipeline.num_frames
    assert loaded.image_size == tiny_pipeline.image_size and not loaded.unet.training and not loaded.lfae.training
    assert type(loaded.scheduler) is type(tiny_pipeline.scheduler)
    for name in ("lfae", "unet", "label_encoder"):
        saved, restored = getattr(tiny_pipeline, name).state_dict(), getattr(loaded, name).state_dict()
        assert saved.keys() == restored.keys()
        assert all(torch.equal(saved[key], restored[key]) for key in saved), f"{name}'s weights changed"
    expected = tiny_pipeline(tiny_image, "frown", num_inference_steps=STEPS, generator=seeded(5))
    got = loaded(tiny_image, "frown", num_inference_steps=STEPS, generator=seeded(5))
    # equal weights, yet not always equal bits: on some CPUs oneDNN's float32 kernels round differently for
    # weights at other memory addresses (seen: 2e-5 on an AMD EPYC VM)
    np.testing.assert_allclose(got.frames, expected.frames, rtol=0, atol=1e-4)


def test_load_pipeline_loads_onto_the_cpu(tiny_pipeline_dir, tmp_path):
    # float32: the suite pins dtype="auto" to it (tests/conftest.py); the choice by CPU is in test_precision.py
    pipe = load_pipeline(tiny_pipeline_dir, device="cpu")
    assert pipe.device.type == "cpu" and pipe.dtype == torch.float32
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        load_pipeline(tmp_path)


def test_load_pipeline_explains_a_missing_model_offline(offline):
    with pytest.raises(FileNotFoundError, match="Hugging Face Hub"):
        load_pipeline("nobody/no-such-lfdm-model")


@pytest.mark.parametrize("scheduler_class", [DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler,
                                             UniPCMultistepScheduler])  # fmt: skip
def test_scheduler_swaps_with_from_config(tiny_image, scheduler_class):
    pipe = make_tiny_pipeline()
    pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
    out = pipe(tiny_image, "surprise", num_inference_steps=STEPS, generator=seeded())
    assert np.isfinite(out.frames).all() and out.flows.shape[1] == pipe.num_frames


def test_ddpm_is_reproducible_with_a_generator(tiny_image):
    pipe = make_tiny_pipeline(scheduler="ddpm")  # DDPM draws fresh noise at every step
    first = pipe(tiny_image, "smile", num_inference_steps=3, generator=seeded(1))
    again = pipe(tiny_image, "smile", num_inference_steps=3, generator=seeded(1))
    np.testing.assert_array_equal(first.flows, again.flows)


def test_half_precision_runs_and_returns_float32(tiny_image):
    pipe = make_tiny_pipeline().to(dtype=torch.bfloat16)
    out = pipe(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded())
    assert out.frames.dtype == np.float32 and np.isfinite(out.frames).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label": "dance"}, "smile"),  # the error lists the valid labels
        ({"label": []}, "at least one"),
        ({"num_inference_steps": 0}, ">= 1"),
        ({"guidance_scale": float("nan")}, "guidance_scale"),
        ({"output_type": "pil"}, "output_type"),
        ({"decode_chunk_size": 0}, "decode_chunk_size"),
        ({"callback_on_step_end_tensor_inputs": ["noise"]}, "pred_original_sample"),
        ({"num_frames": 0}, "num_frames"),
        ({"generator": [torch.Generator()] * 2}, "one per label"),
    ],
)
def test_bad_arguments_raise_value_errors_that_say_what_to_do(tiny_pipeline, tiny_image, kwargs, message):
    arguments = {"image": tiny_image, "label": "smile", "num_inference_steps": STEPS, **kwargs}
    with pytest.raises(ValueError, match=message):
        tiny_pipeline(**arguments)


def test_unreadable_image_file_raises_a_value_error(tiny_pipeline, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 definitely not a jpeg")
    with pytest.raises(ValueError, match="could not read"):
        tiny_pipeline(str(broken), "smile", num_inference_steps=STEPS)


def test_progress_bar_is_configurable(tiny_image, capsys):
    pipe = make_tiny_pipeline()
    pipe.set_progress_bar_config(disable=False, desc="sampling")
    pipe(tiny_image, "smile", num_inference_steps=STEPS)
    assert "sampling" in capsys.readouterr().err


@pytest.mark.parametrize("helper", ["flow_edits", "driving", "photo"])
def test_helpers_below_the_pipeline_never_take_it_back(helper):
    """Pipeline work is pipeline methods: the helpers are tensors in, tensors out, and never get the pipeline."""
    source = Path(__file__).resolve().parents[1] / "lfdm" / f"{helper}.py"
    tree = ast.parse(source.read_text())
    imported = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert "lfdm.pipeline" not in imported, f"lfdm/{helper}.py imports the pipeline"
    parameters = [arg.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for arg in node.args]
    parameters += [arg.arg for node in ast.walk(tree) if isinstance(node, ast.arguments) for arg in node.kwonlyargs]
    assert not {"pipe", "pipeline"} & set(parameters), f"a function of lfdm/{helper}.py takes the pipeline"


def test_with_scheduler_shares_the_networks_and_leaves_the_pipeline_as_it_was(tiny_image):
    pipe = make_tiny_pipeline()
    own = pipe.scheduler
    view = pipe.with_scheduler(make_scheduler("dpmsolver", base_config=own.config))
    assert view.unet is pipe.unet and view.lfae is pipe.lfae and view.label_encoder is pipe.label_encoder
    assert pipe.scheduler is own and isinstance(view.scheduler, DPMSolverMultistepScheduler)
    assert not isinstance(own, DPMSolverMultistepScheduler), "the tiny model's own sampler is another one"
    view.interrupt = True
    assert not pipe.interrupt, "each view has its own stop flag"
    swapped = make_tiny_pipeline()
    swapped.scheduler = make_scheduler("dpmsolver", base_config=own.config)
    expected = swapped(tiny_image, "smile", num_inference_steps=3, generator=seeded()).flows
    np.testing.assert_array_equal(view(tiny_image, "smile", num_inference_steps=3, generator=seeded()).flows, expected)


def test_views_with_different_samplers_run_side_by_side_without_meeting(tiny_image):
    import threading
    from concurrent.futures import ThreadPoolExecutor

    pipe = make_tiny_pipeline()
    names = ("ddim", "dpmsolver")
    alone = {
        name: pipe.with_scheduler(make_scheduler(name, base_config=pipe.scheduler.config))(
            tiny_image, "smile", num_inference_steps=4, generator=seeded()
        ).flows
        for name in names
    }
    assert not np.allclose(alone["ddim"], alone["dpmsolver"]), "the two samplers give different videos"
    both_at_a_step = threading.Barrier(2, timeout=30)  # each step of one run waits for the same step of the other

    def run(name):
        view = pipe.with_scheduler(make_scheduler(name, base_config=pipe.scheduler.config))
        meet = lambda *args: both_at_a_step.wait() and {}  # noqa: E731
        return view(tiny_image, "smile", num_inference_steps=4, generator=seeded(), callback_on_step_end=meet).flows

    with ThreadPoolExecutor(2) as pool:
        together = dict(zip(names, pool.map(run, names), strict=True))
    for name in names:
        np.testing.assert_array_equal(together[name], alone[name], err_msg=f"{name} run beside the other changed")


def test_num_sampling_steps_counts_the_steps_of_every_chained_clip(tiny_pipeline, tiny_image):
    steps = []
    num_frames = tiny_pipeline.num_frames + 3
    tiny_pipeline(
        tiny_image, "smile", num_inference_steps=2, num_frames=num_frames,
        callback_on_step_end=lambda pipe, index, timestep, tensors: steps.append(index),
    )  # fmt: skip
    assert len(steps) > 2, "a longer video samples more than one clip"
    assert tiny_pipeline.num_sampling_steps(num_frames, 2) == len(steps)
    assert tiny_pipeline.num_sampling_steps(None, 2) == 2
    assert tiny_pipeline.num_sampling_steps() == tiny_pipeline.default_num_inference_steps
