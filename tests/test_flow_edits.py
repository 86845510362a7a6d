"""Motion strength, flow composition and videos longer than the model's clip (`lfdm.flow_edits`), on the tiny
pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lfdm.flow_edits import (
    compose_flows,
    continue_step_trace,
    continue_video,
    displacement,
    invert_at,
    new_frames_per_clip,
    num_clips,
    relative_motion,
    scale_motion,
)
from lfdm.latents import resting_grid
from lfdm.testing import make_tiny_pipeline

STEPS = 2


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shifted_grid(size: int, dx: float, dy: float = 0.0, frames: int | None = None) -> torch.Tensor:
    """The resting grid moved by (dx, dy): (1, size, size, 2), or (1, frames, size, size, 2)."""
    grid = resting_grid(size, size) + torch.tensor([dx, dy])
    return grid[None] if frames is None else grid[None, None].expand(1, frames, -1, -1, -1)


def test_scale_motion_multiplies_the_displacement_and_fades_occlusion_in_below_one():
    flows, occlusions = shifted_grid(6, 0.1, -0.05, frames=3), torch.full((1, 3, 6, 6), 0.4)
    for scale in (0.0, 0.5, 2.0):
        scaled, scaled_occlusions = scale_motion(flows, occlusions, scale)
        torch.testing.assert_close(displacement(scaled), scale * displacement(flows))
        torch.testing.assert_close(scaled_occlusions, 1 - 0.6 * torch.full_like(occlusions, min(scale, 1.0)))
    same = scale_motion(flows, occlusions, 1)
    assert same[0] is flows and same[1] is occlusions


@pytest.mark.parametrize("scale", [-0.5, float("nan"), float("inf"), 11, "fast"])
def test_bad_motion_scale_says_the_range(tiny_pipeline, tiny_image, scale):
    with pytest.raises(ValueError, match="motion_scale` must be a number from 0 to 10"):
        tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, motion_scale=scale)


def test_composing_translations_adds_them_and_the_resting_grid_changes_nothing():
    size = 8
    outer, inner = shifted_grid(size, 0.1), shifted_grid(size, 0.0, 0.2, frames=2)
    occlusion, inner_occlusions = torch.ones(1, size, size), torch.full((1, 2, size, size), 0.5)
    flows, occlusions = compose_flows(outer, occlusion, inner, inner_occlusions)
    # interior points only: near the border the inner grid reads the outer one's edge values (border padding)
    torch.testing.assert_close(flows[:, :, 2:-2, 2:-2], shifted_grid(size, 0.1, 0.2, frames=2)[:, :, 2:-2, 2:-2])
    torch.testing.assert_close(occlusions[:, :, 2:-2, 2:-2], torch.full((1, 2, size - 4, size - 4), 0.5))
    still = resting_grid(size, size)[None, None].expand(1, 2, -1, -1, -1)
    same, _ = compose_flows(outer, occlusion, still, torch.ones(1, 2, size, size))
    torch.testing.assert_close(same, outer[:, None].expand(1, 2, -1, -1, -1))


def test_inverting_a_translation_moves_back_and_relative_motion_is_the_change_since_the_reference():
    size = 10
    flow = shifted_grid(size, 0.1, -0.1)
    back = invert_at(flow, shifted_grid(size, 0.1, -0.1, frames=1))
    still = resting_grid(size, size)[None, None]
    torch.testing.assert_close(back[:, :, 2:-2, 2:-2], still[:, :, 2:-2, 2:-2])
    video = torch.stack([shifted_grid(size, dx)[0] for dx in (0.0, 0.1, 0.15, 0.3)])[None]  # (1, 4, h, w, 2)
    visible = torch.ones(1, 4, size, size)
    visible[:, 3] = 0.5
    motion, relative = relative_motion(video, visible, reference=1)
    assert motion.shape == (1, 2, size, size, 2)
    inner = (slice(None), slice(None), slice(3, -3), slice(3, -3))
    expected = torch.stack([shifted_grid(size, dx)[0] for dx in (0.05, 0.2)])[None]
    torch.testing.assert_close(motion[inner], expected[inner])
    torch.testing.assert_close(relative[:, 1], torch.full((1, size, size), 0.5), msg="newly hidden since frame 1")


def test_later_clips_add_the_frames_after_their_middle():
    assert new_frames_per_clip(16) == 7 and num_clips(16, 16) == 1
    assert num_clips(48, 16) == 6, "16 + 5 x 7 >= 48"
    assert num_clips(10, 4) == 7, "a 4-frame clip adds 1 frame"
    with pytest.raises(ValueError, match="3 frames or more"):
        num_clips(5, 2)


def test_continuing_a_video_starts_exactly_where_it_was():
    size = 8
    video = shifted_grid(size, 0.2, frames=3).clone()
    clip = torch.stack([shifted_grid(size, dx)[0] for dx in (0.0, 0.0, 0.05, 0.1)])[None]
    flows, occlusions = continue_video(video, torch.ones(1, 3, size, size), clip, torch.ones(1, 4, size, size))
    assert flows.shape[1] == 3 + new_frames_per_clip(4)
    inner = (slice(None), slice(2, -2), slice(2, -2))
    torch.testing.assert_close(flows[0, 3][inner], shifted_grid(size, 0.3)[0][inner], msg="0.2 so far, then +0.1")


def test_each_traced_step_of_a_later_clip_is_chained_like_the_video():
    size, steps = 8, 2
    video = shifted_grid(size, 0.2, frames=3).clone()
    video_occlusions = torch.ones(1, 3, size, size)
    # step s estimates the clip as a slide of (s + 1) * 0.05 per frame
    clip_trace = torch.stack(
        [torch.stack([shifted_grid(size, (s + 1) * 0.05 * k)[0] for k in range(4)])[None] for s in range(steps)]
    )  # (S, B, L, h, w, 2)
    clip_trace_occlusions = torch.full((steps, 1, 4, size, size), 0.5)
    trace = video.expand(steps, -1, -1, -1, -1), video_occlusions.expand(steps, -1, -1, -1)  # (S B) T ...
    last_frame = video[:, -1:], video_occlusions[:, -1:]
    trace_flows, trace_occlusions = continue_step_trace(trace, last_frame, clip_trace, clip_trace_occlusions)
    assert trace_flows.shape == (steps, 3 + new_frames_per_clip(4), size, size, 2)
    for step in range(steps):
        flows, occlusions = continue_video(video, video_occlusions, clip_trace[step], clip_trace_occlusions[step])
        torch.testing.assert_close(trace_flows[step], flows[0], msg=f"step {step} chained as the video would be")
        torch.testing.assert_close(trace_occlusions[step], occlusions[0])


def test_motion_scale_zero_gives_the_still_picture(tiny_pipeline, tiny_image):
    out = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, motion_scale=0, generator=seeded())
    assert np.abs(out.frames[0] - out.frames[0, :1]).max() <= 2 / 255, "every frame is frame 0"
    np.testing.assert_allclose(out.flows[0], resting_grid(8, 8).expand(4, -1, -1, -1).numpy(), atol=1e-6)
    assert out.occlusions.min() == 1.0, "nothing moves, so nothing is uncovered"


def test_motion_scale_two_doubles_the_displacement(tiny_pipeline, tiny_image):
    once = tiny_pipeline(tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(), output_type="pt")
    twice = tiny_pipeline(
        tiny_image, "smile", num_inference_steps=STEPS, generator=seeded(), output_type="pt", motion_scale=2
    )
    torch.testing.assert_close(displacement(twice.flows), 2 * displacement(once.flows), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(twice.occlusions, once.occlusions)


def test_long_video_chains_clips_that_all_warp_the_original_picture(tiny_image):
    pipe = make_tiny_pipeline()
    steps_seen = []
    out = pipe(
        tiny_image, ["smile", "frown"], num_inference_steps=STEPS, num_frames=7, generator=[seeded(), seeded()],
        callback_on_step_end=lambda p, i, t, tensors: steps_seen.append(i), return_step_trace=True, output_type="pt",
    )  # fmt: skip
    clips = num_clips(7, pipe.num_frames)
    assert out.frames.shape == (2, 7, 32, 32, 3) and out.flows.shape == (2, 7, 8, 8, 2)
    assert steps_seen == list(range(STEPS * clips)), "the steps of every clip, numbered on"
    assert out.trace_flows.shape == (STEPS, 2, 7, 8, 8, 2)
    # every frame is the ORIGINAL picture decoded with the output flows, never a re-warped generated frame
    _, pixels = pipe.processor.preprocess(tiny_image, face="none")  # the whole picture, as the pipeline framed it
    with torch.no_grad():
        decoded = pipe.lfae.decode(
            pixels, out.flows.flatten(0, 1), out.occlusions.flatten(0, 1).unsqueeze(1)
        ).prediction
    np.testing.assert_allclose(decoded.permute(0, 2, 3, 1).numpy(), out.frames.flatten(0, 1).numpy(), atol=1e-5)
    short = pipe(tiny_image, ["smile", "frown"], num_inference_steps=STEPS, generator=[seeded(), seeded()])
    np.testing.assert_allclose(out.flows[:, :1].numpy(), short.flows[:, :1], atol=1e-5)


def test_stopping_a_long_video_returns_the_frames_made_so_far(tiny_image):
    pipe = make_tiny_pipeline()

    def stop_in_the_second_clip(pipe, step_index, timestep, tensors):
        if step_index == STEPS:
            pipe.interrupt = True

    out = pipe(
        tiny_image, "smile", num_inference_steps=STEPS, num_frames=12, callback_on_step_end=stop_in_the_second_clip
    )
    assert out.interrupted and pipe.num_frames < out.frames.shape[1] < 12


def test_a_long_video_encodes_the_picture_once_and_decodes_only_its_own_frames(tiny_image, monkeypatch):
    pipe = make_tiny_pipeline()
    calls = {"encode": 0, "decode": 0}
    encode, decode = pipe.lfae.encode_pyramid, pipe.lfae.decode

    def counted(name, function):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return function(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(pipe.lfae, "encode_pyramid", counted("encode", encode))
    monkeypatch.setattr(pipe.lfae, "decode", counted("decode", decode))
    out = pipe(tiny_image, "smile", num_inference_steps=STEPS, num_frames=9, generator=seeded())
    assert out.frames.shape[1] == 9 and num_clips(9, pipe.num_frames) > 2
    assert calls == {"encode": 1, "decode": 1}, "clips share the picture's features; only the video is decoded"
