"""`python -m lfdm animate` and `generate --frames / --motion-scale` on the tiny random pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lfdm.cli import main
from lfdm.driving import DRIVING_LABEL
from lfdm.video import probe_video, read_video, write_video


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_image):
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(tiny_image).save(folder / "face.png")
    frames = np.stack([np.roll(tiny_image, 2 * shift, axis=1) for shift in range(7)])
    write_video(folder / "drive.mp4", frames, fps=12)
    write_video(folder / "one.mp4", frames[:1], fps=12)
    return folder


def animate(model, inputs, out, *extra) -> int:
    argv = ["animate", "--model", str(model), "--image", str(inputs / "face.png"), "--out", str(out),
            "--device", "cpu", "--panel-size", "32", *extra]  # fmt: skip
    if "--driving-face" not in extra:
        argv += ["--driving-face", "none"]  # the test clip shows no face
    if "--driving" not in extra:
        argv += ["--driving", str(inputs / "drive.mp4")]
    return main(argv)


def test_animate_writes_one_frame_per_driving_frame_at_its_speed(tiny_pipeline_dir, inputs, tmp_path, capsys):
    assert animate(tiny_pipeline_dir, inputs, tmp_path, "--gif") == 0
    assert {path.name for path in tmp_path.iterdir()} == {"video.mp4", "panels.mp4", "video.gif", "flows.npz"}
    info = probe_video(tmp_path / "video.mp4")
    assert info.codec == "h264" and info.num_frames == 7 and info.fps == 12
    height, width = np.asarray(Image.open(inputs / "face.png")).shape[:2]
    assert (info.width, info.height) == (width, height), "the picture's own size (--resolution input)"
    assert probe_video(tmp_path / "panels.mp4").num_frames == 7
    with np.load(tmp_path / "flows.npz") as data:
        assert data["flows"].shape == (7, 8, 8, 2) and data["occlusions"].shape == (7, 8, 8)
        assert data["labels"].tolist() == [DRIVING_LABEL]
    assert "7 frames" in capsys.readouterr().out


def test_animate_cuts_long_videos_and_says_so(tiny_pipeline_dir, inputs, tmp_path, capsys):
    assert animate(tiny_pipeline_dir, inputs, tmp_path, "--max-frames", "3", "--absolute", "--fps", "5") == 0
    info = probe_video(tmp_path / "video.mp4")
    assert info.num_frames == 3 and info.fps == 5
    assert "has 7 frames; using the first 3" in capsys.readouterr().out


def test_animate_motion_scale_zero_writes_the_still_picture(tiny_pipeline_dir, inputs, tmp_path):
    assert animate(tiny_pipeline_dir, inputs, tmp_path, "--motion-scale", "0") == 0
    frames = read_video(tmp_path / "video.mp4").astype(int)
    assert np.abs(frames - frames[:1]).max() <= 3, "H.264 keeps a still video still"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--driving", "one.mp4"], "needs at least 2"),
        (["--driving", "missing.mp4"], "no driving video at"),
        (["--motion-scale", "-1"], "motion_scale"),
        (["--max-frames", "1"], "--max-frames"),
    ],
)
def test_animate_bad_input_is_one_clear_line(tiny_pipeline_dir, inputs, tmp_path, capsys, extra, message):
    extra = [str(inputs / value) if value.endswith(".mp4") else value for value in extra]
    assert animate(tiny_pipeline_dir, inputs, tmp_path, *extra) == 1
    error = capsys.readouterr().err
    assert "error: " in error and message in error.split("error: ", 1)[1] and "Traceback" not in error


def test_generate_makes_longer_and_stiller_videos(tiny_pipeline_dir, inputs, tmp_path):
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(inputs / "face.png"), "--label", "smile",
            "--steps", "2", "--scheduler", "ddim", "--out", str(tmp_path), "--device", "cpu", "--frames", "6",
            "--motion-scale", "0"]  # fmt: skip
    assert main(argv) == 0
    frames = read_video(tmp_path / "smile" / "video.mp4").astype(int)
    assert len(frames) == 6 and np.abs(frames - frames[:1]).max() <= 3
    assert main([*argv[:-4], "--frames", "0"]) == 1
