"""The app's motion controls: the Driving video tab, the video length and the motion strength, through
`GenerationService` and the launched app's API (`gradio_client`), on the tiny pipeline."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from lfdm.app import LAUNCH_OPTIONS, DrivingSettings, GenerationService, GenerationSettings, UserInputError, build_demo
from lfdm.app.inputs import APP_MAX_DRIVING_FRAMES
from lfdm.motion import num_clips
from lfdm.video import probe_video, read_video, write_video

ROOT = Path(__file__).resolve().parents[1]
DRIVING_EXAMPLES = sorted((ROOT / "assets" / "driving").glob("synthface_*.mp4"))  # the real clip: test_face_track


@pytest.fixture(scope="module")
def service(tiny_pipeline_dir, tmp_path_factory) -> GenerationService:
    return GenerationService(
        {"tiny": str(tiny_pipeline_dir)}, "tiny", work_dir=tmp_path_factory.mktemp("requests"), display_size=64,
        panel_size=32,
    )  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    paths = {"face.png": folder / "face.png", "text.mp4": folder / "text.mp4"}
    Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(paths["face.png"])
    paths["text.mp4"].write_text("not a video")
    clip = rng.integers(0, 256, (1, 24, 24, 3), dtype=np.uint8)
    paths["one.mp4"] = write_video(folder / "one.mp4", clip, fps=8)
    # a still face (the app finds the driving face by default; a clip with no face is refused)
    face = np.asarray(Image.open(ROOT / "assets" / "examples" / "synthface_test_8388608.png").convert("RGB"))
    long_clip = np.repeat(face[None, ::2, ::2], APP_MAX_DRIVING_FRAMES + 5, axis=0)
    paths["long.mp4"] = write_video(folder / "long.mp4", long_clip, fps=25)
    return paths


@pytest.fixture(scope="module")
def client(service):
    demo = build_demo(service, driving_dir=ROOT / "assets" / "driving")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **LAUNCH_OPTIONS
    )
    yield Client(url, verbose=False)
    demo.close()


def test_example_driving_videos_are_small_synthface_clips():
    assert len(DRIVING_EXAMPLES) >= 2, "assets/driving/ holds the Driving video tab's examples"
    for path in DRIVING_EXAMPLES:
        info = probe_video(path)
        assert info.codec == "h264" and info.width == 64 and info.num_frames >= 16
        assert path.stat().st_size < 50_000, f"{path.name} should stay small"


def test_service_animates_an_example_clip_with_every_view(service, files):
    example = DRIVING_EXAMPLES[0]
    result = service.animate(files["face.png"], example, DrivingSettings())
    frames = probe_video(example).num_frames
    for video in (result.video, result.flow_video, result.occlusion_video, result.panel_video):
        info = probe_video(video)
        assert info.codec == "h264" and info.num_frames == frames, f"{video.name}: one frame per driving frame"
    assert probe_video(result.video).fps == pytest.approx(probe_video(example).fps), "the driving video's speed"
    assert {path.name for path in result.downloads} >= {"video.mp4", "panels.mp4", "video.gif", "flows.npz"}
    assert f"Animated {frames} frames" in result.note


def test_long_driving_videos_are_cut_and_the_page_says_so(service, files):
    result = service.animate(files["face.png"], files["long.mp4"], DrivingSettings())
    assert probe_video(result.video).num_frames == APP_MAX_DRIVING_FRAMES
    assert f"has {APP_MAX_DRIVING_FRAMES + 5} frames; animated the first {APP_MAX_DRIVING_FRAMES}" in result.note


@pytest.mark.parametrize(
    ("video", "settings", "message"),
    [
        (None, DrivingSettings(), "no driving video"),
        ("text.mp4", DrivingSettings(), "could not read the driving video"),
        ("one.mp4", DrivingSettings(), "needs at least 2"),
        ("example", DrivingSettings(motion_scale=-1), "motion strength must be"),
    ],
)
def test_bad_driving_input_is_a_plain_message(service, files, video, settings, message):
    path = DRIVING_EXAMPLES[0] if video == "example" else files.get(video)
    with pytest.raises(UserInputError, match=message) as caught:
        service.animate(files["face.png"], path, settings)
    assert "/tmp" not in str(caught.value), "no server paths in messages"


def test_longer_video_and_still_motion_through_the_service(service, files):
    settings = GenerationSettings(label=service.labels()[0], scheduler="DDIM", steps=2, num_frames=6, motion_scale=0)
    reports = []
    result = service.generate(files["face.png"], settings, progress=lambda fraction, what: reports.append(what))
    frames = read_video(result.folder / "video.mp4").astype(int)
    assert len(frames) == 6 and np.abs(frames - frames[:1]).max() <= 3, "six frames of the still picture"
    total = 2 * num_clips(6, service.pipeline().num_frames)  # 2 steps per clip
    assert reports[0] == f"sampling step 1 of {total}" and reports[total - 1] == "decoding the frames", reports
    assert result.num_trace_steps == 2


def test_api_animate_and_generate_with_length_and_strength(client, files):
    video, flow, occlusion, panels, downloads, note = client.predict(
        handle_file(str(files["face.png"])), handle_file(str(DRIVING_EXAMPLES[0])), "tiny", True, 1.0,
        api_name="/animate",
    )  # fmt: skip
    path = video["video"] if isinstance(video, dict) else video
    assert probe_video(path).num_frames == probe_video(DRIVING_EXAMPLES[0]).num_frames and "Animated" in note
    generated, *_ = client.predict(
        handle_file(str(files["face.png"])), "smile", "tiny", "DDIM", 2, 1.0, 0, 8, True, 6, 1.5, api_name="/generate"
    )
    path = generated["video"] if isinstance(generated, dict) else generated
    assert probe_video(path).num_frames == 6
