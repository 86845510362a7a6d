"""The app in a real browser: Debian's Chromium driven by Playwright (no browser download).

Upload an image, press Generate, wait until the `<video>` element has decoded a frame, move the step slider and
check that the flow picture changed; upload a real photo and get its face found and its video at the photo's size;
on the Driving video tab, animate a picture with an example clip. The last screenshots are saved to
`tests/artifacts/`.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdm.app import LAUNCH_OPTIONS, GenerationService, build_demo

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
DRIVING_CLIP = Path(__file__).resolve().parents[1] / "assets" / "driving" / "synthface_surprise.mp4"
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
    demo = build_demo(service)
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
    set_steps(page, 1000)
    page.click("#generate")
    page.get_by_text("sampling step").first.wait_for()  # the progress bar is moving
    page.click("#stop")
    deadline = time.monotonic() + 60
    while service.active_runs and time.monotonic() < deadline:  # the stopped run ends after its current step
        time.sleep(0.1)
    assert service.active_runs == 0, "Stop must end the run"
    set_steps(page, 3)
    page.click("#generate")
    page.wait_for_function(VIDEO_DECODED, timeout=120_000)
    folders = [path for path in service.work_dir.iterdir() if path.is_dir()]
    assert len(folders) == 1, "the stopped run must end without writing files; only the second run's are there"


@pytest.mark.parametrize("page", ["app-driving.png"], indirect=True)
def test_driving_video_tab_animates_a_picture_in_chromium(page, tmp_path):
    picture = tmp_path / "other-face.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(picture)
    page.get_by_role("tab", name="Driving video").click()
    page.locator("#driving-image input[type=file]").set_input_files(picture)
    page.locator("#driving-image img").wait_for()
    page.locator("#driving-video input[type=file]").set_input_files(DRIVING_CLIP)
    page.locator("#driving-video video").wait_for()
    page.click("#animate")
    page.wait_for_function(DRIVING_DECODED, timeout=120_000)
    assert "Animated 32 frames" in page.locator("#driving-note").inner_text()
    duration = page.evaluate("() => document.querySelector('#driving-result video').duration")
    assert duration == pytest.approx(32 / 8, abs=0.3), "one frame per driving frame, at the clip's 8 fps"


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
