"""Driving videos: `pipe.animate` (motion transfer through the LFAE), reading and capping videos, bad input.

The clips here show no face (a square sliding over a gradient), so they drive with `driving_face="none"`; finding and
framing a driving face is tested in tests/test_face_track.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.driving import DRIVING_LABEL, load_driving_video, relative_regions
from lfdm.latents import resting_grid
from lfdm.video import iter_video_frames, write_video


@pytest.fixture(scope="module")
def driving_frames() -> np.ndarray:
    """uint8 (6, 40, 40, 3): a bright square sliding right over a gradient."""
    frames = np.zeros((6, 40, 40, 3), np.uint8)
    frames[..., 0] = np.linspace(40, 200, 40, dtype=np.uint8)[None, None]
    for index in range(6):
        frames[index, 12:24, 8 + 3 * index : 20 + 3 * index] = 255
    return frames


def test_animate_gives_one_frame_per_driving_frame(tiny_pipeline, tiny_image, driving_frames):
    out = tiny_pipeline.animate(tiny_image, driving_frames, driving_face="none")
    size, latent = tiny_pipeline.image_size, tiny_pipeline.latent_size
    assert out.frames.shape == (1, 6, size, size, 3) and out.warped.shape == (1, 6, size, size, 3)
    assert out.flows.shape == (1, 6, latent, latent, 2) and out.occlusions.shape == (1, 6, latent, latent)
    assert out.labels == [DRIVING_LABEL] and 0 <= out.frames.min() and out.frames.max() <= 1


def test_relative_motion_of_the_driving_face_itself_is_its_absolute_motion(tiny_pipeline, driving_frames):
    relative = tiny_pipeline.animate(driving_frames[0], driving_frames, relative=True, driving_face="none")
    absolute = tiny_pipeline.animate(driving_frames[0], driving_frames, relative=False, driving_face="none")
    np.testing.assert_allclose(relative.flows, absolute.flows, atol=1e-5)
    np.testing.assert_allclose(relative.frames, absolute.frames, atol=1e-5)


def test_relative_motion_starts_from_the_picture_and_absolute_from_the_driving_pose(tiny_pipeline, tiny_image,
                                                                                     driving_frames):  # fmt: skip
    relative = tiny_pipeline.animate(tiny_image, driving_frames, output_type="pt", driving_face="none")
    absolute = tiny_pipeline.animate(tiny_image, driving_frames, relative=False, output_type="pt", driving_face="none")
    still = tiny_pipeline.animate(
        tiny_image, np.stack([np.asarray(tiny_image)] * 2), relative=False, output_type="pt", driving_face="none"
    )
    # frame 0 of the relative animation is what the LFAE makes of the picture against itself
    torch.testing.assert_close(relative.flows[:, 0], still.flows[:, 0], atol=1e-5, rtol=0)
    assert (absolute.flows[:, 0] - still.flows[:, 0]).abs().max() > 1e-3, "absolute takes the driving frame's pose"


def test_relative_regions_move_the_pictures_regions_by_the_drivers_change():
    def regions(shift, affine):
        from lfdm.models.lfae.region_predictor import RegionParams

        u, s, _ = torch.linalg.svd(affine @ affine.transpose(-1, -2))
        return RegionParams(shift=shift, covar=affine @ affine.transpose(-1, -2), affine=affine,
                            heatmap=torch.zeros(1, 1, 2, 2), u=u, d=torch.diag_embed(s.sqrt()))  # fmt: skip

    start = regions(torch.tensor([[[0.1, 0.2]]]), torch.eye(2)[None, None] * 0.2)
    driving = regions(torch.tensor([[[0.3, 0.1]]]), torch.eye(2)[None, None] * 0.4)
    picture = regions(torch.tensor([[[-0.5, 0.0]]]), torch.tensor([[[[0.1, 0.0], [0.0, 0.3]]]]))
    moved = relative_regions(picture, driving, start)
    torch.testing.assert_close(moved.shift, torch.tensor([[[-0.3, -0.1]]]))
    torch.testing.assert_close(moved.affine, 2 * picture.affine, msg="the driver's region doubled in size")
    same = relative_regions(start, driving, start)
    torch.testing.assert_close(same.affine, driving.affine)
    torch.testing.assert_close(same.shift, driving.shift)


@pytest.mark.parametrize("kind", ["mp4", "gif", "folder", "tensor", "list"])
def test_driving_videos_come_as_files_folders_tensors_and_lists(tmp_path, driving_frames, kind):
    if kind == "mp4":
        source = write_video(tmp_path / "drive.mp4", driving_frames, fps=12)
    elif kind == "gif":
        source = write_video(tmp_path / "drive.gif", driving_frames, fps=10)
    elif kind == "folder":
        source = tmp_path / "frames"
        source.mkdir()
        for index, frame in enumerate(driving_frames):
            Image.fromarray(frame).save(source / f"{index}.png")
    elif kind == "tensor":
        source = torch.from_numpy(driving_frames).permute(0, 3, 1, 2).float() / 255
    else:
        source = [Image.fromarray(frame) for frame in driving_frames]
    video = load_driving_video(source, 32)
    assert video.frames.shape == (6, 3, 32, 32) and not video.truncated
    assert video.fps == {"mp4": 12.0, "gif": 10.0}.get(kind, 0.0)


def test_long_driving_videos_are_cut_without_reading_them_whole(tmp_path, driving_frames, monkeypatch):
    path = write_video(tmp_path / "long.mp4", np.concatenate([driving_frames] * 5), fps=8)
    decoded = []
    original = iter_video_frames

    def counting(source):
        for frame in original(source):
            decoded.append(1)
            yield frame

    monkeypatch.setattr("lfdm.driving.iter_video_frames", counting)
    video = load_driving_video(path, 32, max_frames=4)
    assert video.frames.shape[0] == 4 and video.total_frames == 30 and video.truncated
    assert len(decoded) == 5, "decoding stops one frame past the cap"


def test_animate_caps_the_frames(tiny_pipeline, tiny_image, driving_frames):
    assert tiny_pipeline.animate(tiny_image, driving_frames, max_frames=3, driving_face="none").frames.shape[1] == 3


def test_a_chunk_callback_reports_progress_and_can_stop_decoding(tiny_pipeline, tiny_image, driving_frames):
    reports = []

    def on_chunk_end(pipe, done, total):
        reports.append((done, total))
        pipe.interrupt = done >= 4  # stop after the second chunk

    out = tiny_pipeline.animate(
        tiny_image, driving_frames, driving_face="none", decode_chunk_size=2, callback_on_chunk_end=on_chunk_end
    )
    assert reports == [(2, 6), (4, 6)] and out.interrupted
    assert out.frames.shape[1] == out.flows.shape[1] == out.occlusions.shape[1] == 4, "the frames decoded so far"
    whole = tiny_pipeline.animate(tiny_image, driving_frames, driving_face="none", decode_chunk_size=2)
    assert not whole.interrupted and whole.frames.shape[1] == 6, "the next call starts afresh"
    np.testing.assert_allclose(out.frames[0], whole.frames[0, :4], atol=1e-6)


def test_motion_scale_zero_keeps_the_picture_still(tiny_pipeline, tiny_image, driving_frames):
    out = tiny_pipeline.animate(tiny_image, driving_frames, motion_scale=0, driving_face="none")
    assert np.abs(out.frames[0] - out.frames[0, :1]).max() <= 2 / 255
    np.testing.assert_allclose(out.flows[0], resting_grid(8, 8).expand(6, -1, -1, -1).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    ("video", "error", "message"),
    [
        (None, ValueError, "no driving video"),
        ("missing.mp4", FileNotFoundError, "no driving video at"),
        ("text.mp4", ValueError, "cannot read"),
        ("one frame", ValueError, "needs at least 2"),
        ("3d array", ValueError, "must be \\(F, H, W, 3\\)"),
    ],
)
def test_bad_driving_videos_say_what_to_do(tiny_pipeline, tiny_image, tmp_path, driving_frames, video, error, message):
    if video == "text.mp4":
        video = tmp_path / video
        video.write_text("not a video")
    elif video == "missing.mp4":
        video = tmp_path / video
    elif video == "one frame":
        video = driving_frames[:1]
    elif video == "3d array":
        video = driving_frames[0]
    with pytest.raises(error, match=message):
        tiny_pipeline.animate(tiny_image, video)


def test_half_precision_animates_and_returns_float32(tiny_image, driving_frames):
    from lfdm.testing import make_tiny_pipeline

    pipe = make_tiny_pipeline().to(dtype=torch.bfloat16)
    out = pipe.animate(tiny_image, driving_frames, driving_face="none")
    assert out.frames.dtype == np.float32 and np.isfinite(out.frames).all() and out.frames.shape[1] == 6


def test_animate_refuses_an_unknown_output_type(tiny_pipeline, tiny_image):
    with pytest.raises(ValueError, match="`output_type` must be 'np' or 'pt'"):
        tiny_pipeline.animate(tiny_image, np.stack([np.asarray(tiny_image)] * 2), output_type="list")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"motion_scale": -1}, "motion_scale"),
        ({"decode_chunk_size": 0}, "decode_chunk_size"),
        ({"driving_face": "maybe"}, "driving_face"),
        ({"face": "maybe"}, "`face` must be one of"),
        ({"resolution": 3}, "resolution"),
    ],
)
def test_animate_checks_its_arguments_before_reading_the_driving_video(tiny_pipeline, tiny_image, kwargs, message):
    # no driving video at all: the argument's own error must come first, before any video is read
    with pytest.raises(ValueError, match=message):
        tiny_pipeline.animate(tiny_image, None, **kwargs)
