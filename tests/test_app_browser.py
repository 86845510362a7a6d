"""The app in a real browser: Debian's Chromium driven by Playwright (no browser download).

Upload an image, press Generate, wait until the `<video>` element has decoded a frame, move the step slider and
check that the flow picture changed; upload a real photo and get its face found and its video at the photo's size;
on the Driving video tab, animate a picture with an example clip picked by its thumbnail, and with a clip recorded
from a fake webcam (Chromium's fake camera, fed from a file). What a first visit meets: the model's default
action, Stop off while idle, the inspector closed, a bad upload explained at once, captions beside (not over) the
videos' own titles, and faces large enough to judge on the Compare tab. The last screenshots are saved to
`tests/artifacts/`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from lfdm.app import LAUNCH_OPTIONS, GenerationService, build_demo
from lfdm.app.comparison import COMPARE_TILE
from lfdm.app.inputs import MAX_UPLOAD_BYTES
from lfdm.video import read_video

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"
VIDEO_DECODED = """() => {
    const video = document.querySelector('#video video');
    return video !== null && video.readyState >= 2 && video.videoWidth > 0;
}"""
DRIVING_DECODED = """() => {
    const video = document.querySelector('#driving-result video');
    return video !== null && video.readyState >= 2 && video.videoWidth > 0;
}"""
DRIVING_DIR = Path(__file__).resolve().parents[1] / "assets" / "driving"
DRIVING_CLIP = DRIVING_DIR / "synthface_surprise.mp4"
REAL_CLIP = DRIVING_DIR / "astronaut_surprise_handheld.mp4"  # a real face, filmed by a moving camera
RECORDED = """() => {
    const video = document.querySelector('#driving-video video:not([data-testid=webcam-video])');
    return video !== null && (video.getAttribute('src') ?? '').includes('/gradio_api/file=') && video.readyState >= 1;
}"""
FLOW_SRC = "() => document.querySelector('#flow-strip img')?.getAttribute('src') ?? null"
SAME_PICTURE = """async ([first, second]) => {
    const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
    const [a, b] = [await bytes(first), await bytes(second)];
    return a.length === b.length && a.every((value, index) => value === b[index]);
}"""


@pytest.fixture
def app(tiny_pipeline_dir, tmp_path):
    """The app around the tiny pipeline, launched on a free port: (url, service)."""
    service = GenerationService(
        {"tiny": str(tiny_pipeline_dir)}, "tiny", work_dir=tmp_path / "requests", display_size=64, panel_size=32
    )
    demo = build_demo(service, driving_dir=DRIVING_DIR)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url, _ = demo.launch(
        prevent_thread_lock=True, server_name="127.0.0.1", server_port=port, quiet=True, **LAUNCH_OPTIONS
    )
    yield url, service
    demo.close()


@pytest.fixture
def page(app, tmp_path, request):
    """A Chromium page on the app with a picture uploaded; its last state is saved to tests/artifacts/.

    `request.param`: the screenshot's file name, or (file name, picture to upload) for another picture than a
    random one."""
    if not CHROMIUM.exists():
        message = "Debian's chromium is not installed at /usr/bin/chromium (`apt-get install chromium`; .ci/run does)"
        if os.environ.get("LFDM_REQUIRE_BROWSER"):  # CI installs it: there a missing browser is a failure
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    screenshot, picture = (request.param, None) if isinstance(request.param, str) else request.param
    if picture is None:
        picture = tmp_path / "face.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(picture)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app[0])
            page.wait_for_function("() => document.querySelector('#label input')?.value")  # the model's labels
            page.locator("#input-image input[type=file]").set_input_files(picture)
            page.locator("#input-image img").wait_for()
            page.click("#advanced button")  # open the accordion for the steps
            yield page
        finally:
            page.screenshot(path=str(ARTIFACTS / screenshot), full_page=True)
            browser.close()


def open_inspector(page) -> None:
    """The step inspector starts closed; open it (its header is the accordion's button)."""
    page.locator("#inspector .label-wrap").first.click()
    page.locator("#step-slider").wait_for()


def set_steps(page, steps: int) -> None:
    """Type the step count. The Advanced accordion mounts its sliders when it opens and may then reset their
    values once, so type again until the slider holds the number."""
    box = page.locator("#steps input[type=number]")
    for _ in range(20):
        box.fill(str(steps))
        box.press("Enter")
        if page.evaluate("() => document.querySelector('#steps input[type=range]').value") == str(steps):
            return
        page.wait_for_timeout(250)
    raise AssertionError(f"the steps slider does not take {steps}")


@pytest.mark.parametrize("page", ["app.png"], indirect=True)
def test_generate_play_and_inspect_steps_in_chromium(page):
    set_steps(page, 3)
    page.click("#generate")
    page.wait_for_function(VIDEO_DECODED, timeout=120_000)
    assert page.evaluate("() => document.querySelector('#video video').videoWidth") > 0

    open_inspector(page)
    page.wait_for_function(f"() => ({FLOW_SRC})() !== null")
    last_step = page.evaluate(FLOW_SRC)
    page.locator("#step-slider input[type=range]").fill("1")
    page.wait_for_function(f"(before) => ({FLOW_SRC})() !== before", arg=last_step)
    first_step = page.evaluate(FLOW_SRC)
    assert not page.evaluate(SAME_PICTURE, [last_step, first_step]), "the flow picture must change with the step"
    assert "Step 1 of 3" in page.locator("#step-caption").inner_text()


@pytest.mark.parametrize("page", ["app-stopped.png"], indirect=True)
def test_stop_ends_a_long_run_and_the_next_run_works(page, app):
    _, service = app
    assert page.locator("#stop").is_disabled(), "nothing runs: Stop is off"
    set_steps(page, 1000)
    page.click("#generate")
    page.get_by_text("sampling step").first.wait_for()  # the progress bar is moving
    assert page.locator("#stop").is_enabled(), "a run: Stop is on"
    page.click("#stop")
    deadline = time.monotonic() + 60
    while service.active_runs and time.monotonic() < deadline:  # the stopped run ends after its current step
        time.sleep(0.1)
    assert service.active_runs == 0, "Stop must end the run"
    page.wait_for_function("() => document.querySelector('#stop').disabled")
    set_steps(page, 3)
    page.click("#generate")
    page.wait_for_function(VIDEO_DECODED, timeout=120_000)
    page.wait_for_function("() => document.querySelector('#stop').disabled", timeout=30_000)  # off again once done
    folders = [path for path in service.work_dir.iterdir() if path.is_dir()]
    assert len(folders) == 1, "the stopped run must end without writing files; only the second run's are there"


@pytest.mark.parametrize("page", ["app-driving.png"], indirect=True)
def test_driving_video_tab_animates_a_picture_in_chromium(page, tmp_path):
    picture = tmp_path / "other-face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(picture)
    page.get_by_role("tab", name="Driving video").click()
    page.locator("#driving-image input[type=file]").set_input_files(picture)
    page.locator("#driving-image img").wait_for()
    clips = page.locator("#driving-clips")
    clips.get_by_text("surprise, SynthFace cartoon face, still camera").wait_for()  # each clip by its name
    assert clips.locator("img").count() == 4
    captions = "[...document.querySelectorAll('#driving-clips .caption-label')]"
    cut = f"() => {captions}.filter(caption => caption.scrollWidth > caption.clientWidth).length"
    assert page.evaluate(cut) == 0, "every clip's whole name shows, none cut with an ellipsis"
    clips.locator("img").first.click()  # the surprise clip's thumbnail
    page.wait_for_function("() => document.querySelector('#driving-video video')?.src.includes('synthface_surprise')")
    assert page.locator("#driving-stop").is_disabled(), "nothing runs: Stop is off"
    page.click("#animate")
    page.wait_for_function(DRIVING_DECODED, timeout=120_000)
    note = page.locator("#driving-note").inner_text()
    assert "Animated 32 frames" in note and "The driving face was found in" in note, note
    duration = page.evaluate("() => document.querySelector('#driving-result video').duration")
    assert duration == pytest.approx(32 / 8, abs=0.3), "one frame per driving frame, at the clip's 8 fps"
    page.wait_for_function("() => document.querySelector('#driving-stop').disabled", timeout=30_000)


@pytest.mark.parametrize("page", ["app-driving-stop.png"], indirect=True)
def test_stop_ends_an_animation_and_the_next_one_works(page, app, tmp_path, monkeypatch):
    from lfdm.models.lfae import LatentFlowAutoencoder

    decode = LatentFlowAutoencoder.decode

    def slow_decode(self, *args, **kwargs):  # a long animation: time to press Stop while it runs
        time.sleep(3.0)
        return decode(self, *args, **kwargs)

    monkeypatch.setattr(LatentFlowAutoencoder, "decode", slow_decode)
    _, service = app
    picture = tmp_path / "other-face.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(picture)
    page.get_by_role("tab", name="Driving video").click()
    page.locator("#driving-image input[type=file]").set_input_files(picture)
    page.locator("#driving-image img").wait_for()
    page.locator("#driving-clips img").first.click()
    page.wait_for_function("() => document.querySelector('#driving-video video')?.src.includes('synthface_surprise')")
    page.click("#animate")
    page.wait_for_function("() => !document.querySelector('#driving-stop').disabled")  # a run: Stop is on
    page.click("#driving-stop")  # cancels the event: the run ends after its current chunk, without a video
    deadline = time.monotonic() + 60
    while service.active_runs and time.monotonic() < deadline:
        time.sleep(0.1)
    assert service.active_runs == 0, "Stop must end the animation"
    page.wait_for_function("() => document.querySelector('#driving-stop').disabled")
    assert page.locator("#driving-result video").count() == 0, "a stopped animation shows no video"
    monkeypatch.setattr(LatentFlowAutoencoder, "decode", decode)
    page.click("#animate")
    page.wait_for_function(DRIVING_DECODED, timeout=120_000)
    page.wait_for_function("() => document.querySelector('#driving-stop').disabled", timeout=30_000)


def write_y4m(path: Path, clip: Path) -> Path:
    """A clip as a Y4M file (8-bit 4:2:0), the format Chromium's fake camera plays (in a loop)."""
    frames = read_video(clip)
    height, width = frames.shape[1:3]
    with open(path, "wb") as file:
        file.write(f"YUV4MPEG2 W{width} H{height} F8:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            file.write(b"FRAME\n" + cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def test_a_clip_recorded_from_the_webcam_animates_a_picture(app, tmp_path):
    """Chromium's fake camera plays the real example clip; the Driving tab records 3 s of it and animates the
    astronaut with the recording."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    camera = write_y4m(tmp_path / "camera.y4m", REAL_CLIP)
    fake_camera = [
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + fake_camera)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app[0])
            page.wait_for_function("() => document.querySelector('#label input')?.value")
            page.get_by_role("tab", name="Driving video").click()
            page.locator("#driving-image input[type=file]").set_input_files(ASTRONAUT)
            page.locator("#driving-image img").wait_for()
            page.click("#driving-video button[aria-label='Capture from camera']")
            page.click("#driving-video [title='grant webcam access'] button")
            page.wait_for_function(
                "() => document.querySelector('#driving-video [data-testid=webcam-video]')?.readyState >= 2"
            )
            page.click("#driving-video .capture-button")  # Record
            page.wait_for_timeout(3000)
            page.click("#driving-video .capture-button")  # Stop: the recording is uploaded
            page.wait_for_function(RECORDED, timeout=60_000)
            page.click("#animate")
            page.wait_for_function(DRIVING_DECODED, timeout=120_000)
            note = page.locator("#driving-note").inner_text()
            frames = int(note.split("Animated ")[1].split(" frames")[0])
            assert frames >= 8, f"about 3 s of the camera's 8 fps; {note}"
            assert "The driving face was found in" in note, note
            size = page.evaluate("() => [document.querySelector('#driving-result video').videoWidth, "
                                 "document.querySelector('#driving-result video').videoHeight]")  # fmt: skip
            assert size == [320, 320], "the astronaut's own size"
        finally:
            page.screenshot(path=str(ARTIFACTS / "app-webcam.png"), full_page=True)
            browser.close()


@pytest.mark.parametrize("page", [("app-photo.png", ASTRONAUT)], indirect=True)
def test_a_real_photo_gets_its_face_found_and_a_video_at_its_size(page):
    page.wait_for_function("() => document.querySelector('#face-preview img')?.getAttribute('src')")
    page.get_by_text("Face found (").wait_for()
    set_steps(page, 2)
    page.click("#generate")
    page.wait_for_function(VIDEO_DECODED, timeout=120_000)
    size = page.evaluate("() => [document.querySelector('#video video').videoWidth, "
                         "document.querySelector('#video video').videoHeight]")  # fmt: skip
    assert size == [320, 320], f"the video has the photo's size; got {size}"
    page.uncheck("#find-face input[type=checkbox]")
    page.get_by_text("The whole picture is animated").wait_for()  # the note follows the checkbox


CAPTIONED_VIDEOS = ["video", "flow-video", "occlusion-video", "panel-video"]
BOXES = """(ids) => ids.map((id) => {
    const box = (element) => { const r = element.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
    return [box(document.getElementById(id + '-caption')), box(document.querySelector('#' + id + ' video'))];
})"""


@pytest.mark.parametrize("page", ["app-first-page.png"], indirect=True)
def test_the_first_page_selects_the_models_action_with_stop_off_and_the_inspector_closed(page):
    assert page.locator("#label input").input_value() == "surprise", "the tiny model has no choice: surprise"
    assert page.locator("#stop").is_disabled()
    assert page.locator("#step-slider").count() == 0 or not page.locator("#step-slider").is_visible()
    assert page.locator("#inspector .label-wrap").first.is_visible(), "the closed inspector's header shows"


@pytest.mark.parametrize("page", ["app-bad-upload.png"], indirect=True)
def test_a_bad_upload_is_explained_beside_the_input_at_once_and_the_old_note_goes(page, tmp_path):
    note = page.locator("#face-note")
    note.get_by_text("No face was found").wait_for()  # the random picture's note
    bad = tmp_path / "not-a-picture.png"
    bad.write_text("this is not a picture")
    page.locator("#input-image input[type=file]").set_input_files(bad)
    note.get_by_text("Could not read the file as an image; use a PNG, JPEG, WebP or BMP file.").wait_for()
    assert "No face was found" not in note.inner_text(), "the earlier picture's note is gone"
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    page.locator("#input-image input[type=file]").set_input_files(empty)
    note.get_by_text("The file is empty").wait_for()
    assert "Could not read" not in note.inner_text()
    oversized = tmp_path / "oversized.png"
    oversized.write_bytes(b"\0" * (MAX_UPLOAD_BYTES + 1))
    page.locator("#input-image input[type=file]").set_input_files(oversized)
    note.get_by_text("The file is larger than 20 MB; use a smaller picture.").wait_for()


@pytest.mark.parametrize("page", [("app-captions.png", ASTRONAUT)], indirect=True)
def test_no_caption_covers_a_title_drawn_in_the_videos(page, tmp_path):
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(tmp_path / "other.png")
    set_steps(page, 2)
    page.click("#generate")
    page.wait_for_function(VIDEO_DECODED, timeout=120_000)
    for elem_id in CAPTIONED_VIDEOS:
        page.wait_for_function(f"() => document.querySelector('#{elem_id} video')?.readyState >= 2", timeout=60_000)
    for elem_id, (caption, video) in zip(CAPTIONED_VIDEOS, page.evaluate(BOXES, CAPTIONED_VIDEOS), strict=True):
        overlap_x = min(caption[2], video[2]) - max(caption[0], video[0])
        overlap_y = min(caption[3], video[3]) - max(caption[1], video[1])
        assert overlap_x <= 0 or overlap_y <= 0, f"#{elem_id}: caption {caption} overlaps the video {video}"
        assert caption[3] <= video[1] + 0.5, f"#{elem_id}: the caption sits above the video"
        label = page.locator(f"#{elem_id} [data-testid=block-label]")
        assert label.count() == 0 or not label.first.is_visible(), f"#{elem_id}: Gradio's floating label is hidden"
    covering = page.evaluate("""() => ['flow-video', 'panel-video'].flatMap((id) => {
        const video = document.querySelector('#' + id + ' video').getBoundingClientRect();
        return [...document.querySelectorAll('#' + id + ' button')].filter((button) => {
            const box = button.getBoundingClientRect();
            const titles = video.top + video.height / 4;  // the titles are drawn along the top of the frames
            return box.width > 0 && box.left < video.right && box.right > video.left && box.top < titles
                && box.bottom > video.top;
        }).map((button) => id + ': ' + (button.getAttribute('aria-label') || button.innerText));
    })""")
    assert covering == [], f"buttons over the titles drawn in the videos: {covering}"
    page.locator("#run-note").get_by_text("Made in").wait_for()
    page.locator("#input-image input[type=file]").set_input_files(tmp_path / "other.png")
    page.wait_for_function("() => !document.querySelector('#run-note').innerText.includes('Made in')")  # stale


@pytest.mark.parametrize("page", [("app-compare.png", ASTRONAUT)], indirect=True)
def test_compare_shows_each_actions_face_at_least_128_px_high(page):
    set_steps(page, 2)
    page.get_by_role("tab", name="Compare").click()
    page.click("#compare")
    page.wait_for_function(
        "() => { const v = document.querySelector('#compare-video video'); return v && v.readyState >= 2; }",
        timeout=120_000,
    )
    shown = page.evaluate("""(tile) => {
        const video = document.querySelector('#compare-video video');
        const box = video.getBoundingClientRect();
        const scale = Math.min(box.width / video.videoWidth, box.height / video.videoHeight);  // object-fit: contain
        return [video.videoHeight, tile * scale];
    }""", COMPARE_TILE)  # fmt: skip
    assert shown[0] >= COMPARE_TILE, "each face is a COMPARE_TILE px tile of the video"
    assert shown[1] >= 128, f"each face is shown {shown[1]:.0f} px high"
