"""The motion controls on the shipped pipeline (`checkpoints/`): driving videos, longer videos, motion strength."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.data.synthface import render_video, split_identities
from lfdm.flow_edits import displacement, new_frames_per_clip, num_clips
from lfdm.metrics import psnr
from lfdm.pipeline import load_pipeline

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "synthface_test_8388608.png"


@pytest.fixture(scope="module")
def shipped():
    pipe = load_pipeline(CHECKPOINTS, device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def test_clips() -> tuple[np.ndarray, np.ndarray]:
    """Two unseen SynthFace faces: a surprise video of one (uint8 (16, 64, 64, 3)) and the other's neutral face."""
    first, second = split_identities("test", 4)[2:4]
    return render_video(first, "surprise", 0, resolution=64, num_frames=16), render_video(
        second, "neutral", 0, resolution=64, num_frames=16
    )[0]


def as_images(frames) -> torch.Tensor:
    """(F, H, W, 3) in [0, 1] or uint8 -> (F, 3, H, W) float in [0, 1]."""
    frames = torch.as_tensor(np.asarray(frames))
    frames = frames.float() / 255 if frames.dtype == torch.uint8 else frames.float()
    return frames.permute(0, 3, 1, 2)


def test_a_clip_driving_its_own_first_frame_rebuilds_the_clip(shipped, test_clips):
    clip, _ = test_clips
    out = shipped.animate(clip[0], clip)
    scores = psnr(as_images(out.frames[0]), as_images(clip))
    # the LFAE's own reconstruction level: 32.1 dB on average over the test videos
    assert scores.mean() >= 28, f"{scores.mean():.2f} dB over all frames"


def test_driving_another_face_keeps_that_face_and_moves_it(shipped, test_clips):
    clip, face = test_clips
    out = shipped.animate(face, clip)  # relative motion
    first = psnr(as_images(out.frames[0, :1]), as_images(face[None]))
    assert first >= 30, f"frame 0 must be the other face: {first.item():.2f} dB"
    change = np.abs(out.frames[0, -1] - out.frames[0, 0]).mean()
    assert change > 0.005, f"the face must move like the driver's (mean change {change:.4f})"


def seam_changes(num_frames: int, clip_frames: int) -> list[int]:
    """Indices i of the frame changes i -> i + 1 where a later clip's frames begin: into its first frame and on."""
    firsts = [clip_frames + k * new_frames_per_clip(clip_frames) for k in range(num_clips(num_frames, clip_frames) - 1)]
    return [i for first in firsts for i in (first - 1, first) if i < num_frames - 1]


def test_48_frames_chain_clips_without_a_jump_where_they_meet(shipped):
    generator = torch.Generator().manual_seed(0)
    out = shipped(Image.open(EXAMPLE), ["surprise"], num_inference_steps=3, num_frames=48, generator=generator)
    frames = out.frames[0]
    assert frames.shape == (48, 64, 64, 3)
    change = np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))  # change[i]: frame i -> i + 1
    seams = seam_changes(48, shipped.num_frames)
    worst = change[seams].max() / np.median(change)
    assert worst <= 3, f"where clips meet the video changes {worst:.2f}x the median frame change"


def test_motion_strength_zero_is_still_and_two_moves_more(shipped):
    image = Image.open(EXAMPLE)
    runs = {
        scale: shipped(
            image,
            "surprise",
            num_inference_steps=3,
            motion_scale=scale,
            output_type="pt",
            generator=torch.Generator().manual_seed(0),
        )  # fmt: skip
        for scale in (0.0, 1.0, 2.0)
    }
    still = runs[0.0].frames[0]
    assert (still - still[:1]).abs().max() <= 2 / 255, "motion_scale=0: every frame is frame 0"
    moved = {scale: displacement(run.flows[0]).norm(dim=-1).mean() for scale, run in runs.items()}
    assert moved[2.0] >= 1.5 * moved[1.0]
    # the motion the frames show, as the LFAE measures it between frame 0 and each frame (above the still video's)
    seen = {}
    for scale, run in runs.items():
        frames = run.frames[0].permute(0, 3, 1, 2)
        with torch.no_grad():
            estimate = shipped.lfae.estimate_flow(frames[:1].expand(len(frames), -1, -1, -1), frames)
        seen[scale] = displacement(estimate.flow).norm(dim=-1).mean()
    ratio = (seen[2.0] - seen[0.0]) / (seen[1.0] - seen[0.0])
    assert ratio >= 1.5, f"the frames of motion_scale=2 show {ratio:.2f}x the motion of motion_scale=1"
