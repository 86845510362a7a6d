"""The Gradio app, in process: the launched app through `gradio_client`, and `GenerationService` directly.

Every request runs the tiny random pipeline (32 px, 4 frames) for 2 steps, so the whole file takes seconds.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import shutil
import socket
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from lfdm.app import LAUNCH_OPTIONS, NO_MODEL_MESSAGE, GenerationService, GenerationSettings, build_demo
from lfdm.app.comparison import COMPARE_TILE
from lfdm.app.inputs import UserInputError, preset_of, quality_presets, read_photo
from lfdm.app.models import DEFAULT_LABEL_KEY, find_pipelines
from lfdm.app.runs import GenerationStopped
from lfdm.app.speed import SHOWN_ABOVE_S, SpeedBook, Work, estimate_note
from lfdm.app.traces import STRIP_TILE
from lfdm.app.ui import _Handlers
from lfdm.evaluation.default_steps import write_default_steps
from lfdm.video import probe_video, read_video

STEPS = 2
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def service(tiny_pipeline_dir, tmp_path_factory) -> GenerationService:
    return GenerationService(
        {"tiny": str(tiny_pipeline_dir)},
        "tiny",
        work_dir=tmp_path_factory.mktemp("requests"),
        display_size=64,
        panel_size=32,
    )


@pytest.fixture(scope="module")
def app_url(service):
    demo = build_demo(service)
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=free_port(), quiet=True, **LAUNCH_OPTIONS
    )
    yield url
    demo.close()


@pytest.fixture(scope="module")
def label(service) -> str:
    return service.labels()[0]


@pytest.fixture(scope="module")
def client(app_url) -> Client:
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """Good, awkward and bad input files."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)
    paths = {}

    def save(name, image, **kwargs):
        paths[name] = folder / name
        image.save(paths[name], **kwargs)

    save("face.png", Image.fromarray(rgb))
    save("rgba.png", Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)))
    save("gray.png", Image.fromarray(rgb[..., 0]))
    save("16bit.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees when shown
    save("rotated.jpg", Image.fromarray(rgb), exif=exif)
    frames = [Image.fromarray(np.roll(rgb, shift, axis=1)) for shift in range(3)]
    paths["animated.gif"] = folder / "animated.gif"
    frames[0].save(paths["animated.gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    save("tiny.png", Image.new("RGB", (1, 1)))
    save("thin.png", Image.new("RGB", (20000, 20)))
    paths["text.png"] = folder / "text.png"
    paths["text.png"].write_text("this is not a picture")
    whole = io.BytesIO()
    Image.fromarray(rgb).save(whole, format="PNG")
    paths["truncated.png"] = folder / "truncated.png"
    paths["truncated.png"].write_bytes(whole.getvalue()[: len(whole.getvalue()) // 2])
    paths["bomb.png"] = folder / "bomb.png"
    paths["bomb.png"].write_bytes(_png_header_only(50_000, 50_000))
    return paths


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height pixels (a decompression bomb as Pillow sees it) in a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def generate(client: Client, image, label: str, **overrides):
    arguments = {"scheduler": "DDIM", "steps": STEPS, "guidance": 1.0, "seed": 0, "fps": 8, "find_face": True}
    arguments |= {"frames": 4, "motion": 1.0}
    arguments.update(overrides)
    image = handle_file(str(image)) if image is not None else None
    return client.predict(
        image,
        label,
        "tiny",
        arguments["scheduler"],
        arguments["steps"],
        arguments["guidance"],
        arguments["seed"],
        arguments["fps"],
        arguments["find_face"],
        arguments["frames"],
        arguments["motion"],
        api_name="/generate",
    )


def _video_path(output) -> str:
    return output["video"] if isinstance(output, dict) else output


def test_api_returns_h264_video_flows_and_occlusions(client, images, service, label):
    video, flow, occlusion, panel, downloads, step = generate(client, images["face.png"], label)
    frames = service.pipeline().num_frames
    for output in (video, flow, occlusion, panel):
        info = probe_video(_video_path(output))
        assert info.codec == "h264", f"{output} is {info.codec}, browsers need H.264"
        assert info.num_frames == frames, f"{output} has {info.num_frames} frames, the model makes {frames}"
    assert probe_video(_video_path(video)).height == 64, "the displayed video is upscaled to display_size"
    names = {Path(path).name for path in downloads}
    assert {"video.mp4", "panels.mp4", "video.gif", "flows.npz", "trace.npz"} <= names
    with np.load(next(path for path in downloads if path.endswith("flows.npz"))) as saved:
        latent = service.pipeline().latent_size
        assert saved["flows"].shape == (frames, latent, latent, 2)
        assert saved["occlusions"].shape == (frames, latent, latent)
    assert step["value"] == STEPS, "the step slider ends on the last step"


BAD_INPUTS = [
    ("no image", dict(image=None), "upload a picture"),
    ("not an image", dict(image="text.png"), "could not read"),
    ("truncated file", dict(image="truncated.png"), "could not read"),
    ("1x1 image", dict(image="tiny.png"), "at least"),
    ("20000x20 image", dict(image="thin.png"), "longer than wide"),
    ("decompression bomb", dict(image="bomb.png"), "too large"),
    ("unknown label", dict(label="dancing"), "this model knows"),
    ("zero steps", dict(steps=0), "steps must be"),
    ("too many steps", dict(steps=5000), "steps must be"),
    ("fractional steps", dict(steps=2.5), "whole number"),
    ("negative guidance", dict(guidance=-1), "guidance scale must be"),
    ("huge guidance", dict(guidance=1e9), "guidance scale must be"),
    ("unknown scheduler", dict(scheduler="euler"), "unknown scheduler"),
    ("negative seed", dict(seed=-5), "seed must be"),
    ("zero fps", dict(fps=0), "fps must be"),
    ("65 frames", dict(frames=65), "video length (frames) must be"),
    ("negative motion strength", dict(motion=-1), "motion strength must be"),
]


def test_every_bad_input_is_a_plain_error_and_the_app_keeps_serving(client, images, label):
    for name, change, expected in BAD_INPUTS:
        change = {"image": "face.png", "label": label, **change}
        image = images[change.pop("image")] if change["image"] is not None else change.pop("image")
        with pytest.raises(Exception) as caught:
            generate(client, image, **change)
        message = str(caught.value)
        assert expected in message.lower(), f"{name}: the error should say {expected!r}; got {message!r}"
        assert "/tmp" not in message and "gradio" not in message.lower(), f"{name}: leaks a server path: {message!r}"
    video, *_ = generate(client, images["face.png"], label)
    assert probe_video(_video_path(video)).codec == "h264", "a good request after the bad ones still works"


@pytest.mark.parametrize("name", ["rgba.png", "gray.png", "16bit.png", "cmyk.jpg", "rotated.jpg", "animated.gif"])
def test_awkward_images_are_handled(service, images, name, label):
    result = service.generate(images[name], GenerationSettings(label=label, scheduler="DDIM", steps=STEPS))
    assert probe_video(result.video).num_frames == service.pipeline().num_frames


def test_exif_rotation_is_applied(service, images):
    rotated = read_photo(images["rotated.jpg"])
    upright = read_photo(images["face.png"])
    assert upright.shape == (48, 40, 3), "face.png is 40x48 (w x h)"
    assert rotated.shape == (40, 48, 3), "EXIF orientation 6 turns it to landscape"


def test_eight_concurrent_clients_all_get_their_video(app_url, images, label):
    def one_client(seed: int) -> str:
        # The server's files are on this machine: read them there instead of downloading every output 8 times.
        video, *_ = generate(Client(app_url, verbose=False, download_files=False), images["face.png"], label, seed=seed)
        return video["path"]

    with ThreadPoolExecutor(8) as pool:
        videos = list(pool.map(one_client, range(8)))
    assert len(set(videos)) == 8, "every client gets its own file"
    assert all(probe_video(path).codec == "h264" for path in videos)


def test_same_seed_gives_the_same_video(service, images, label):
    settings = GenerationSettings(label=label, scheduler="DDIM", steps=STEPS, seed=7)
    first, second = (service.generate(images["face.png"], settings) for _ in range(2))
    assert np.array_equal(read_video(first.folder / "video.mp4"), read_video(second.folder / "video.mp4"))


def test_requests_with_different_samplers_at_once_neither_change_the_model_nor_each_other(service, images, label):
    pipe = service.pipeline()
    own = pipe.scheduler
    samplers = ("DDIM", "DPM-Solver++")
    settings = {name: GenerationSettings(label=label, scheduler=name, steps=3, seed=5) for name in samplers}
    run = lambda name: service.generate(images["face.png"], settings[name]).request_id  # noqa: E731
    flows = lambda request_id: service.traces.get(request_id).flows  # noqa: E731
    alone = {name: flows(run(name)) for name in samplers}
    assert not np.array_equal(alone["DDIM"], alone["DPM-Solver++"]), "the samplers make different motion"
    with ThreadPoolExecutor(2) as pool:
        together = dict(zip(samplers, pool.map(run, samplers), strict=True))
    for name in samplers:
        assert np.array_equal(flows(together[name]), alone[name]), f"{name} changed when run beside the other"
    assert service.pipeline() is pipe and pipe.scheduler is own, "the loaded pipeline keeps its own scheduler"


def test_step_inspector_renders_every_step_without_running_the_model(service, images, label, monkeypatch):
    result = service.generate(images["face.png"], GenerationSettings(label=label, scheduler="DDIM", steps=3))
    pipe_class = type(service.pipeline())
    monkeypatch.setattr(pipe_class, "__call__", lambda *args, **kwargs: pytest.fail("the inspector ran the model"))
    views = [service.inspect(result.request_id, step) for step in range(1, result.num_trace_steps + 1)]
    assert result.num_trace_steps == 3
    assert not np.array_equal(views[0].flow_strip, views[-1].flow_strip), "the flow changes from step to step"
    scales = {view.caption.split("displacement of ")[1] for view in views}
    assert len(scales) == 1, f"one colour scale for every step; got {scales}"
    with_videos = service.inspect(result.request_id, 2, videos=True)
    assert probe_video(with_videos.flow_video).num_frames == service.pipeline().num_frames
    assert probe_video(with_videos.occlusion_video).codec == "h264"


def test_inspector_reads_a_trace_back_from_disk(service, images, label):
    result = service.generate(images["face.png"], GenerationSettings(label=label, scheduler="DDIM", steps=STEPS))
    in_memory = service.inspect(result.request_id, 1).flow_strip
    service.traces.forget()  # another worker process (ZeroGPU) keeps nothing in this one's memory
    assert np.array_equal(service.inspect(result.request_id, 1).flow_strip, in_memory)
    with pytest.raises(UserInputError, match="generate a video first"):
        service.inspect("../../etc", 1)


def test_progress_moves_with_every_step_then_decoding(service, images, label):
    reports = []
    service.generate(
        images["face.png"],
        GenerationSettings(label=label, scheduler="DDIM", steps=4),
        progress=lambda fraction, what: reports.append((fraction, what)),
    )
    fractions = [fraction for fraction, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0, fractions
    assert [what for _, what in reports[:3]] == [f"sampling step {i} of 4" for i in (1, 2, 3)]
    assert reports[3][1] == "decoding the frames"


def test_stop_interrupts_sampling_after_the_current_step(service, images, label):
    steps_seen = []

    def progress(fraction, what):
        steps_seen.append(what)
        if len(steps_seen) == 2:
            threading.Thread(target=service.stop, args=("browser-tab",)).start()

    with pytest.raises(GenerationStopped):
        service.generate(
            images["face.png"],
            GenerationSettings(label=label, scheduler="DDIM", steps=200),
            session="browser-tab",
            progress=progress,
        )
    assert len(steps_seen) < 10, f"sampling went on after Stop: {len(steps_seen)} steps"
    assert not service.stop("browser-tab") and service.active_runs == 0, "nothing is left running"


def test_compare_makes_one_grid_of_every_label(service, images):
    result = service.compare(images["face.png"], GenerationSettings(scheduler="DDIM", steps=STEPS), batch_size=4)
    info = probe_video(result.video)
    labels = service.labels()
    assert info.num_frames == service.pipeline().num_frames
    columns, rows = min(len(labels), 4), -(-len(labels) // 4)
    # face.png is 40 x 48 (w x h): each tile keeps the photo's aspect, 32 px high
    assert info.width >= columns * 26 and info.height >= rows * 32, "up to 4 labels a row, one 32 px high tile each"


def test_old_request_folders_are_cleaned_up(service, images, label, monkeypatch):
    result = service.generate(images["face.png"], GenerationSettings(label=label, scheduler="DDIM", steps=STEPS))
    assert result.folder.is_dir()
    monkeypatch.setattr(service.folders, "max_age_s", -1.0)
    service.cleanup()
    assert not result.folder.exists()


def test_model_selector_lists_every_pipeline_folder(tiny_pipeline_dir, tmp_path):
    root = tmp_path / "checkpoints"
    for name in ("mug128", "synthface/run1"):
        shutil.copytree(tiny_pipeline_dir, root / name)
    (root / "notes").mkdir()
    assert list(find_pipelines(root)) == ["checkpoints/mug128", "checkpoints/synthface/run1"]
    service = GenerationService.from_checkpoints(root, model=str(root / "synthface/run1"))
    assert service.default_model == "checkpoints/synthface/run1"


def test_without_a_model_the_page_says_how_to_get_one(tmp_path, images, label):
    service = GenerationService.from_checkpoints(tmp_path / "empty")
    assert not service.has_model
    demo = build_demo(service)
    shown = [block.value for block in demo.blocks.values() if getattr(block, "elem_id", None) == "no-model"]
    assert shown and "python -m lfdm convert" in shown[0] and "--model" in shown[0]
    with pytest.raises(UserInputError, match="No model yet"):
        service.generate(images["face.png"], GenerationSettings(label=label))
    assert NO_MODEL_MESSAGE in service.describe()


def test_app_py_imports_without_launching(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    sys.modules.pop("app", None)
    app = importlib.import_module("app")
    assert not app.demo.is_running, "importing app.py must not start a server"
    assert app.parse_args(["--port", "7999"]).port == 7999
    assert app.parse_args([]).host in ("127.0.0.1", "0.0.0.0")


def test_a_broken_model_folder_is_a_plain_error(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    service = GenerationService({"broken": str(tmp_path / "broken")}, "broken")
    with pytest.raises(UserInputError, match="could not load the model 'broken'"):
        service.labels()


def test_api_compare_returns_one_grid_video(client, images, service):
    video, downloads = client.predict(
        handle_file(str(images["face.png"])), "tiny", "DDIM", STEPS, 1.0, 0, 8, api_name="/compare"
    )
    assert probe_video(_video_path(video)).num_frames == service.pipeline().num_frames
    assert sorted(Path(path).name for path in downloads) == ["compare.gif", "compare.mp4"]


def test_about_shows_the_default_models_own_card(tiny_pipeline_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    (folder / "README.md").write_text("# tiny\n\nIt moves the mouth and nothing else.\n")
    service = GenerationService({"tiny": str(folder)}, "tiny", work_dir=tmp_path / "requests")
    markdown = [str(block.value) for block in build_demo(service).blocks.values() if hasattr(block, "value")]
    about = [value for value in markdown if "What LFDM is" in value]
    assert about and "It moves the mouth and nothing else." in about[0], "the card, not facts fixed in the app"


ASTRONAUT = ROOT / "assets" / "examples" / "astronaut.png"


def test_a_photo_comes_back_at_its_own_size_with_the_face_animated(service, label):
    result = service.generate(ASTRONAUT, GenerationSettings(label=label, scheduler="DDIM", steps=STEPS))
    info = probe_video(result.video)
    assert (info.width, info.height) == (320, 320), "the video has the photo's size, not the 32 px model's"
    assert result.face_box is not None and result.face_note is None
    x0, y0, x1, y1 = result.face_box
    assert 100 <= x0 < x1 <= 220 and 50 <= y0 < y1 <= 175, f"the astronaut's face, not {result.face_box}"
    first = read_video(result.video)[0].astype(float)
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"), float)
    mse = np.mean((first - photo) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 33, "frame 0 is the photo (up to H.264)"
    panels = probe_video(next(path for path in result.downloads if path.name == "panels.mp4"))
    assert panels.num_frames == service.pipeline().num_frames, "the panels show the model's crop"


def test_face_preview_draws_the_box_and_says_what_was_found(service, images):
    found = service.find_face(ASTRONAUT)
    assert found.face_box is not None and "Face found (" in found.note
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    assert found.picture.shape == photo.shape and not np.array_equal(found.picture, photo), "the box is drawn"
    missing = service.find_face(images["face.png"])
    assert missing.face_box is None and "no face was found" in missing.note.lower()
    assert "whole picture" in missing.note
    off = service.find_face(ASTRONAUT, find_face=False)
    assert off.face_box is None and "Find the face* is off" in off.note and np.array_equal(off.picture, photo)


def test_several_faces_are_noted_and_the_largest_is_used(service, tmp_path):
    photo = Image.open(ASTRONAUT).convert("RGB")
    pair = Image.new("RGB", (640 + 160, 320), (120, 120, 120))
    pair.paste(photo, (0, 0))
    pair.paste(photo.resize((240, 240)), (640 - 40, 40))
    path = tmp_path / "pair.png"
    pair.save(path)
    preview = service.find_face(path)
    assert "2 faces were found" in preview.note, preview.note
    assert preview.face_box[0] < 320, f"the larger face (left) is animated; got {preview.face_box}"


def test_api_generate_and_find_face_take_the_checkbox(client, label):
    video, *_ = client.predict(
        handle_file(str(ASTRONAUT)), label, "tiny", "DDIM", STEPS, 1.0, 0, 8, False, 4, api_name="/generate"
    )
    assert (probe_video(_video_path(video)).width, probe_video(_video_path(video)).height) == (320, 320)
    picture, note = client.predict(handle_file(str(ASTRONAUT)), True, "tiny", api_name="/find_face")
    assert "Face found (" in note and Path(picture if isinstance(picture, str) else picture["path"]).is_file()


def test_the_image_input_takes_a_webcam_picture_and_finding_the_face_is_on(service):
    demo = build_demo(service)
    by_id = {getattr(block, "elem_id", None): block for block in demo.blocks.values()}
    assert by_id["input-image"].sources == ["upload", "webcam", "clipboard"]
    assert by_id["find-face"].value is True, "'Find the face' is on by default"
    assert "face-preview" in by_id and "face-note" in by_id


def test_quality_presets_offer_the_measured_default_25_steps_and_the_paper():
    presets = quality_presets("DPM-Solver++", 4)
    assert presets == {
        "Fast (model default, 4 steps)": ("DPM-Solver++", 4),
        "DPM-Solver++, 25 steps": ("DPM-Solver++", 25),
        "Paper: DDPM 1000": ("paper: DDPM 1000", 1000),
    }
    assert list(quality_presets("DPM-Solver++", 25)) == ["Fast (model default, 25 steps)", "Paper: DDPM 1000"]
    assert preset_of(presets, "paper: DDPM 1000", 1000.0) == "Paper: DDPM 1000"
    assert preset_of(presets, "DDIM", 4) is None and preset_of(presets, "DPM-Solver++", "") is None


@pytest.fixture(scope="module")
def measured_service(tiny_pipeline_dir, tmp_path_factory) -> GenerationService:
    """The tiny model with a measured default: DPM-Solver++, 3 steps (`python -m lfdm choose-default --write`)."""
    folder = tmp_path_factory.mktemp("measured") / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    write_default_steps(folder, "dpmsolver", 3)
    return GenerationService({"measured": str(folder)}, "measured", work_dir=folder.parent / "requests")


def test_a_model_without_a_measured_default_keeps_its_samplers_usual_steps(service):
    assert service.default_sampler() == ("DDIM", 50)
    assert service.check_settings(GenerationSettings(label=service.labels()[0])).steps == 50


def test_the_app_samples_the_models_measured_default_and_says_how_long_it_took(measured_service, images):
    assert measured_service.default_sampler() == ("DPM-Solver++", 3)
    assert measured_service.default_steps(None, "DDIM") == 50, "the measured count is DPM-Solver++'s only"
    label = measured_service.labels()[0]
    result = measured_service.generate(images["face.png"], GenerationSettings(label=label))
    assert result.num_trace_steps == 3, "no scheduler and no steps: the model's own sampler and measured steps"
    assert result.seconds > 0 and result.note == f"Made in {result.seconds:.2f} s on the CPU (DPM-Solver++, 3 steps)."


def test_loading_a_model_sets_the_quality_scheduler_and_steps_boxes(measured_service):
    handlers = _Handlers(measured_service)
    *_, scheduler, steps, quality = handlers.page_loaded()
    assert (scheduler, steps) == ("DPM-Solver++", 3)
    assert quality.value == "Fast (model default, 3 steps)" and len(quality.choices) == 3
    assert handlers.choose_quality("measured", "Paper: DDPM 1000") == ("paper: DDPM 1000", 1000)
    assert handlers.choose_quality("measured", "DPM-Solver++, 25 steps") == ("DPM-Solver++", 25)
    assert handlers.choose_scheduler("measured", "DDIM") == (50, None), "DDIM's usual count, no Quality choice"
    assert handlers.choose_scheduler("measured", "DPM-Solver++") == (3, "Fast (model default, 3 steps)")
    assert handlers.choose_steps("measured", "DPM-Solver++", 25) == "DPM-Solver++, 25 steps"
    by_id = {getattr(block, "elem_id", None): block for block in build_demo(measured_service).blocks.values()}
    assert "quality" in by_id and "run-note" in by_id


def test_api_generate_keeps_its_outputs_and_the_time_goes_to_the_page(service, client, images, label):
    assert len(generate(client, images["face.png"], label)) == 6, "the time goes to the page, not the API"
    demo = build_demo(service)
    note = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "run-note")
    generation = next(dep for dep in demo.config["dependencies"] if dep["api_name"] == "generate")
    fills_note = [dep for dep in demo.config["dependencies"] if note._id in dep["outputs"]]
    assert any(dep["trigger_after"] == generation["id"] for dep in fills_note), "the note follows a finished generation"


# --- issue 26: what a first visit shows, errors at the moment they happen, results you can read -----------------


def test_a_bad_upload_is_explained_beside_the_input_at_once(service, images, tmp_path):
    handlers = _Handlers(service)
    (tmp_path / "empty.png").write_bytes(b"")
    expected = {
        images["text.png"]: "Could not read the file as an image; use a PNG, JPEG, WebP or BMP file.",
        tmp_path / "empty.png": "The file is empty",
        images["bomb.png"]: "too large",
    }
    for path, message in expected.items():
        picture, note = handlers.preview_face({"path": str(path)}, True, "tiny")  # the upload event, not Generate
        assert picture is None and message in note, f"{path.name}: {note!r}"
        assert "/tmp" not in note
    picture, note = handlers.preview_face({"path": str(ASTRONAUT)}, True, "tiny")
    assert picture is not None and note.startswith("Face found ("), "a good picture replaces the old note"


def test_the_face_note_is_plain_words(service):
    note = service.find_face(ASTRONAUT).note
    assert re.fullmatch(r"Face found \(\d+x\d+ px\), animated and pasted back\.", note), note


def test_a_huge_photo_is_searched_on_a_reduced_copy_and_the_note_gives_the_video_size(service, tmp_path):
    path = tmp_path / "huge.jpg"
    Image.open(ASTRONAUT).convert("RGB").resize((6000, 6000), Image.BICUBIC).save(path, quality=85)
    service.find_face(ASTRONAUT)  # the first search of a process loads the cascades
    began = time.perf_counter()
    preview = service.find_face(path)
    seconds = time.perf_counter() - began
    assert "The photo is 6000x6000 px; the video will be 1024x1024 px" in preview.note, preview.note
    assert preview.video_size == (1024, 1024)
    small = service.find_face(ASTRONAUT).face_box
    assert np.allclose(preview.face_box, np.array(small) * 6000 / 320, atol=6000 / 320 * 4), "the same face, scaled"
    # About 0.5 s on a 2-core machine shared with other work; the full-size search took over 6 s.
    assert seconds < 2.5, f"finding the face in a 6000 px photo took {seconds:.1f} s"


def test_the_first_action_is_the_models_own_choice(tiny_pipeline_dir, tmp_path, service):
    assert service.labels() == ["smile", "frown", "surprise"]
    assert service.default_label() == "surprise", "without a choice of its own, a model starts on surprise"
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    config = folder / "label_encoder" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), DEFAULT_LABEL_KEY: "frown"}))
    chosen = GenerationService({"m": str(folder)}, "m", work_dir=tmp_path / "requests")
    assert chosen.default_label() == "frown"
    label, *_ = _Handlers(chosen).page_loaded()
    assert label.value == "frown", "the page selects it"
    shipped = json.loads((ROOT / "checkpoints" / "label_encoder" / "config.json").read_text())
    assert shipped[DEFAULT_LABEL_KEY] in shipped["labels"] and shipped[DEFAULT_LABEL_KEY] != "anger"


def test_stop_is_secondary_and_off_while_idle_and_the_inspector_starts_closed(service):
    by_id = {getattr(block, "elem_id", None): block for block in build_demo(service).blocks.values()}
    for stop in (by_id["stop"], by_id["compare-stop"], by_id["driving-stop"]):
        assert stop.variant == "secondary" and stop.size == "sm" and stop.interactive is False
    assert by_id["inspector"].open is False


def test_a_long_run_is_announced_with_the_measured_speed(tiny_pipeline_dir, tmp_path, images):
    service = GenerationService({"tiny": str(tiny_pipeline_dir)}, "tiny", work_dir=tmp_path / "requests")
    settings = GenerationSettings(label="surprise", scheduler="DDIM", steps=STEPS)
    assert service.estimate_seconds(images["face.png"], settings) is None, "nothing measured yet"
    service.measure_speed()
    short = service.estimate_seconds(images["face.png"], settings)
    assert short is not None and 0 < short < SHOWN_ABOVE_S
    assert service.estimate_note(images["face.png"], settings) == "", "a short run needs no estimate"
    long_run = replace(settings, steps=1000, num_frames=64)
    seconds = service.estimate_seconds(images["face.png"], long_run)
    assert seconds > 100 * short, "1000 steps of 16 clips take far longer than 2 steps of one"
    assert re.fullmatch(r"This takes about \*\*\d+ (s|min)\*\* at the speed measured on this machine\.",
                        service.estimate_note(images["face.png"], long_run))  # fmt: skip
    began = time.perf_counter()
    service.generate(images["face.png"], settings)
    took = time.perf_counter() - began  # sampling, rendering and writing the files
    estimate = service.estimate_seconds(images["face.png"], settings)  # now with the writing measured too
    assert took / 5 - 0.1 < estimate < took * 5 + 0.1, f"estimated {estimate:.2f} s, took {took:.2f} s"
    three, six = (service.estimate_seconds(images["face.png"], settings, n, compare=True) for n in (3, 6))
    assert 0 < three < six, "Compare: the more actions, the longer"
    began = time.perf_counter()
    service.compare(images["face.png"], settings)
    took = time.perf_counter() - began
    three = service.estimate_seconds(images["face.png"], settings, 3, compare=True)  # now from that run
    assert took / 3 < three < took * 3, f"Compare: estimated {three:.2f} s, took {took:.2f} s"


def test_compare_shows_each_actions_face_at_least_128_px_high(service):
    result = service.compare(ASTRONAUT, GenerationSettings(scheduler="DDIM", steps=STEPS))
    frames = read_video(result.video)
    assert frames.shape[1] >= COMPARE_TILE >= 128, "one row of three faces, each COMPARE_TILE px high"
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"), float)
    x0, y0, x1, y1 = service.find_face(ASTRONAUT).face_box
    tile = frames[0, -COMPARE_TILE - 2 : -2, :COMPARE_TILE].astype(float)  # the first action's tile, frame 0
    side = 1.6 * max(x1 - x0, y1 - y0)
    centre = ((x0 + x1) / 2, (y0 + y1) / 2)
    crop = photo[round(centre[1] - side / 2) : round(centre[1] + side / 2), round(centre[0] - side / 2) :
                 round(centre[0] + side / 2)]  # fmt: skip
    crop = np.asarray(Image.fromarray(crop.astype(np.uint8)).resize((COMPARE_TILE, COMPARE_TILE)), float)
    assert np.abs(tile - crop).mean() < 20, "the tile is the photo cropped around the face"


def test_flow_and_occlusion_results_are_smooth_and_the_inspector_keeps_the_cells(service, images, label):
    result = service.generate(images["face.png"], GenerationSettings(label=label, scheduler="DDIM", steps=STEPS))
    occlusion = read_video(result.occlusion_video)[0, ..., 0].astype(float)
    blocks = occlusion.shape[0] // service.pipeline().latent_size
    # inside a latent cell a nearest-neighbour upsampling is flat; a smooth one changes from pixel to pixel
    steps_inside = np.abs(np.diff(occlusion, axis=1))[:, [i for i in range(occlusion.shape[1] - 1) if (i + 1) % blocks]]
    assert steps_inside.mean() > 0.05, "the occlusion video is smoothly upsampled"
    strip = service.inspect(result.request_id, 1).occlusion_strip[..., 0].astype(int)
    cell = strip[: STRIP_TILE // 8, : STRIP_TILE // 8]
    assert (cell == cell[0, 0]).all(), "the inspector shows the exact latent cells"


def test_the_speed_book_separates_sampling_decoding_rendering_and_writing():
    book = SpeedBook()
    at_model_size = Work(sampling=16, frames=16, megapixels=0.0)
    at_photo_size = Work(sampling=16, frames=16, megapixels=0.25)
    assert book.estimate("m", at_photo_size) is None, "nothing measured"
    book.add_run("m", sampling_s=1.6, rendering_s=0.8, work=at_model_size)  # 0.1 s a frame-step, 0.05 s a frame
    book.add_run("m", sampling_s=1.6, rendering_s=1.6, work=at_photo_size)  # + 0.05 s a frame of 0.25 Mpx
    book.add_writing("m", seconds=0.4, megapixel_frames=4.0)  # 0.1 s a megapixel-frame
    assert book.rates("m") == pytest.approx({"step": 0.1, "frame": 0.05, "megapixel": 0.2, "writing": 0.1})
    long_run = Work(sampling=160, frames=48, megapixels=1.0)
    assert book.estimate("m", long_run) == pytest.approx(16 + 48 * (0.05 + 0.2 + 0.1))
    assert book.estimate("m", long_run, compare=True) == pytest.approx(16 + 48 * (0.05 + 0.2)), "no files"
    book.add_compare("m", seconds=8.0, work=Work(sampling=160, frames=48, megapixels=0.1))
    assert book.estimate("m", long_run, compare=True) == pytest.approx(8.0), "Compare's own measured speed"
    assert estimate_note(4.0) == "" and "about **16 s**" in estimate_note(16.0) and "**3 min**" in estimate_note(170)
