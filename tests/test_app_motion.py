"""The app's motion controls: the Driving video tab, the video length and the motion strength, through
`GenerationService` and the launched app's API (`gradio_client`), on the tiny pipeline."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from lfdm.app import LAUNCH_OPTIONS, DrivingSettings, GenerationService, GenerationSettings, UserInputError, build_demo
from lfdm.app import inputs as app_inputs
from lfdm.app.driving_tab import _choose_clip
from lfdm.app.runs import GenerationStopped
from lfdm.app.text import DRIVING_HELP
from lfdm.app.ui import _Handlers
from lfdm.app.widgets import driving_clips
from lfdm.driving import MAX_DRIVING_FRAMES
from lfdm.flow_edits import num_clips
from lfdm.framing import WHOLE_PICTURE
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
    long_clip = np.repeat(face[None, ::2, ::2], MAX_DRIVING_FRAMES + 5, axis=0)
    paths["long.mp4"] = write_video(folder / "long.mp4", long_clip, fps=25)
    paths["face40.mp4"] = write_video(folder / "face40.mp4", long_clip[:40], fps=25)
    ramp = np.linspace(40, 200, 64)[None, None, :, None] + 4 * np.arange(6)[:, None, None, None]
    plain = np.broadcast_to(ramp, (6, 48, 64, 3)).astype(np.uint8)
    paths["plain.mp4"] = write_video(folder / "plain.mp4", plain, fps=8)  # a moving ramp: no face in any frame
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
    assert probe_video(result.video).num_frames == MAX_DRIVING_FRAMES
    assert f"has {MAX_DRIVING_FRAMES + 5} frames; animated the first {MAX_DRIVING_FRAMES}" in result.note


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


def test_the_app_cuts_driving_videos_where_the_pipeline_does_and_says_where():
    assert not hasattr(app_inputs, "APP_MAX_DRIVING_FRAMES"), "one cap: the library's"
    assert f"longer than {MAX_DRIVING_FRAMES} frames" in DRIVING_HELP.format(max_frames=MAX_DRIVING_FRAMES)


def test_the_page_says_where_the_driving_face_was_found(service, files):
    result = service.animate(files["face.png"], files["face40.mp4"], DrivingSettings())
    assert "The driving face was found in 40 of 40 frames" in result.note, result.note


def test_a_clip_without_a_face_is_a_plain_message_unless_the_switch_is_off(service, files):
    with pytest.raises(UserInputError, match=r"no face was found in any of the 6 driving frames") as caught:
        service.animate(files["face.png"], files["plain.mp4"], DrivingSettings())
    assert "turn off *Find the driving face*" in str(caught.value) and "driving_face=" not in str(caught.value)
    result = service.animate(files["face.png"], files["plain.mp4"], DrivingSettings(driving_face=False))
    assert "Animated 6 frames" in result.note and "driving face" not in result.note


def test_the_switches_reach_the_pipeline(service, files, monkeypatch):
    pipe_class = type(service.pipeline())  # each request animates on a pipeline of its own over the same networks
    calls = []
    animate = pipe_class.animate
    monkeypatch.setattr(pipe_class, "animate", lambda *args, **kwargs: calls.append(kwargs) or animate(*args, **kwargs))
    handlers = _Handlers(service)
    video = {"path": str(DRIVING_EXAMPLES[0])}
    quiet = lambda fraction, desc: None  # noqa: E731 - the page's progress bar
    handlers.animate({"path": str(files["face.png"])}, video, "tiny", True, 1.0, False, False, progress=quiet)
    handlers.animate({"path": str(files["face.png"])}, video, "tiny", True, 1.0, progress=quiet)  # the defaults
    assert [(call["face"], call["driving_face"]) for call in calls] == [("none", "none"), ("auto", "auto")]


def test_stop_ends_an_animation_between_chunks_of_frames(service, files):
    reports = []

    def progress(fraction, what):
        reports.append(what)
        service.stop("me")  # Stop pressed while the first chunk is decoded

    before = {path for path in service.work_dir.iterdir()}
    with pytest.raises(GenerationStopped, match="press Animate"):
        service.animate(files["face.png"], files["face40.mp4"], DrivingSettings(), session="me", progress=progress)
    assert reports == ["decoded 16 of 40 frames"], "stopped after the first chunk"
    assert {path for path in service.work_dir.iterdir()} == before, "a stopped run writes no files"
    assert service.active_runs == 0
    assert "Animated 40 frames" in service.animate(files["face.png"], files["face40.mp4"], DrivingSettings()).note


def test_the_driving_switches_are_for_face_models_only(tiny_pipeline_dir, tmp_path, service):
    label, info, length, find_face, driving_find_face, driving_face, *_ = _Handlers(service).choose_model("tiny")
    assert [box.visible for box in (find_face, driving_find_face, driving_face)] == [True] * 3
    whole = GenerationService({"tiny": str(tiny_pipeline_dir)}, "tiny", work_dir=tmp_path / "requests")
    whole.pipeline().lfae.register_to_config(framing=WHOLE_PICTURE.to_config())
    *_, find_face, driving_find_face, driving_face, _, _, _ = _Handlers(whole).choose_model("tiny")
    assert [box.visible for box in (find_face, driving_find_face, driving_face)] == [False] * 3


def test_example_clips_are_shown_with_their_names_and_thumbnails(service):
    clips = driving_clips(ROOT / "assets" / "driving")
    listed = json.loads((ROOT / "assets" / "driving" / "clips.json").read_text())
    assert [clip.name for clip in clips] == [entry["name"] for entry in listed]
    demo = build_demo(service, driving_dir=ROOT / "assets" / "driving")
    gallery = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "driving-clips")
    captions = [item["caption"] for item in gallery.value]
    images = [Path(item["image"]["path"]).name for item in gallery.value]
    assert captions == [clip.name for clip in clips]
    assert images == [clip.thumbnail.name for clip in clips] and len(set(images)) == len(images)
    video = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "driving-video")
    assert "webcam" in video.sources, "a clip can be recorded from the webcam"
    chosen = _choose_clip([str(clip.file) for clip in clips])(SimpleNamespace(index=len(clips) - 1))
    assert chosen == str(clips[-1].file), "a click on a thumbnail puts its clip in the video input"


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
    # the switches, after the five arguments above: off, the frames of a clip without a face are used as they are
    *_, note = client.predict(
        handle_file(str(files["face.png"])), handle_file(str(files["plain.mp4"])), "tiny", True, 1.0, False, True,
        api_name="/animate",
    )  # fmt: skip
    assert "Animated 6 frames" in note
    generated, *_ = client.predict(
        handle_file(str(files["face.png"])), "smile", "tiny", "DDIM", 2, 1.0, 0, 8, True, 6, 1.5, api_name="/generate"
    )
    path = generated["video"] if isinstance(generated, dict) else generated
    assert probe_video(path).num_frames == 6
