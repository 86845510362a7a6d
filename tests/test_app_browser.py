"""The app in a real browser: Debian's Chromium driven by Playwright (no browser download).

Upload an image, press Generate, wait until the `<video>` element has decoded a frame, move the step slider and
check that the flow picture changed. The last screenshot is saved to `tests/artifacts/app.png`.
"""

from __future__ import annotations

import socket
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
VIDEO_DECODED = """() => {
    const video = document.querySelector('#video video');
    return video !== null && video.readyState >= 2 && video.videoWidth > 0;
}"""
FLOW_SRC = "() => document.querySelector('#flow-strip img')?.getAttribute('src') ?? null"
SAME_PICTURE = """async ([first, second]) => {
    const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer());
    const [a, b] = [await bytes(first), await bytes(second)];
    return a.length === b.length && a.every((value, index) => value === b[index]);
}"""


@pytest.fixture
def app_url(tiny_pipeline_dir, tmp_path):
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
    yield url
    demo.close()


def test_generate_play_and_inspect_steps_in_chromium(app_url, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(
            "Debian's chromium is not installed at /usr/bin/chromium (`apt-get install chromium`; .ci/run does)"
        )
    from playwright.sync_api import sync_playwright

    picture = tmp_path / "face.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(picture)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(app_url)
            page.wait_for_function("() => document.querySelector('#label input')?.value")  # the model's labels
            page.locator("#input-image input[type=file]").set_input_files(picture)
            page.locator("#input-image img").wait_for()
            page.click("#advanced button")  # open the accordion: 3 sampling steps keep the test short
            page.locator("#steps input[type=range]").fill("3")
            page.click("#generate")

            page.wait_for_function(VIDEO_DECODED, timeout=120_000)
            assert page.evaluate("() => document.querySelector('#video video').videoWidth") > 0

            page.wait_for_function(f"() => ({FLOW_SRC})() !== null")
            last_step = page.evaluate(FLOW_SRC)
            page.locator("#step-slider input[type=range]").fill("1")
            page.wait_for_function(f"(before) => ({FLOW_SRC})() !== before", arg=last_step)
            first_step = page.evaluate(FLOW_SRC)
            assert not page.evaluate(SAME_PICTURE, [last_step, first_step]), (
                "the flow picture must change with the step"
            )
            assert "Step 1 of 3" in page.locator("#step-caption").inner_text()
        finally:
            page.screenshot(path=str(ARTIFACTS / "app.png"), full_page=True)
            browser.close()
