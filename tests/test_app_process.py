"""`python app.py` as people run it: a separate process on its own port.

A running app keeps serving every example while another Gradio app (a test session, a second app) cleans up the
temporary folder they share; and a model it cannot load or a bad option ends the start with one `error:` line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _environment(**extra) -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LFDM_DTYPE": "float32", "OMP_NUM_THREADS": "1", **extra}
    env.pop("LFDM_MODEL", None)
    return env


def _get(url: str, timeout: float = 10) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, b""


@pytest.fixture
def running_app(tiny_pipeline_dir, tmp_path):
    """`python app.py` on the tiny model and a free port, with a Gradio folder it shares with the test: (url,
    that folder). Stopped by its process id at the end."""
    shared = tmp_path / "shared-gradio"
    shared.mkdir()
    port = free_port()
    log = (tmp_path / "app.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "app.py", "--model", str(tiny_pipeline_dir), "--port", str(port)],
        cwd=ROOT,
        env=_environment(GRADIO_TEMP_DIR=str(shared)),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"app.py ended with status {process.returncode}:\n{(tmp_path / 'app.log').read_text()}")
            try:
                if _get(url + "/config")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer in 180 s:\n{(tmp_path / 'app.log').read_text()}")
            time.sleep(0.5)
        yield url, shared
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _example_files(url: str) -> dict[str, str]:
    """Every example file the page offers (example pictures, the driving clips' thumbnails): its URL -> its name."""
    status, body = _get(url + "/config")
    assert status == 200
    files = {}
    for component in json.loads(body)["components"]:
        if component.get("type") == "dataset":
            values = [value for sample in component["props"]["samples"] for value in sample]
        elif component.get("type") == "gallery":
            values = [item.get("image") for item in component["props"].get("value") or []]
        else:
            continue
        for value in values:
            if isinstance(value, dict) and value.get("url"):
                files[value["url"]] = value["orig_name"]
    return files


def test_a_running_app_keeps_serving_every_example_after_others_clean_their_temp_folder(running_app, tmp_path):
    url, shared = running_app
    examples = _example_files(url)
    catalogue = json.loads((ROOT / "assets" / "driving" / "clips.json").read_text())
    thumbnails = [ROOT / "assets" / "driving" / clip["thumbnail"] for clip in catalogue]
    expected = {path.name: path for path in [*(ROOT / "assets" / "examples").glob("*.png"), *thumbnails]}
    assert sorted(examples.values()) == sorted(expected), "every example picture and driving clip thumbnail"
    # a clip picked in the gallery is served from the repository too
    clips = {
        url + "/gradio_api/file=" + str(ROOT / "assets" / "driving" / clip["file"]): clip["file"] for clip in catalogue
    }
    expected.update({clip["file"]: ROOT / "assets" / "driving" / clip["file"] for clip in catalogue})
    examples.update(clips)
    # What a test session or a second app does to a Gradio folder it shares: launch an app with the same examples,
    # close it (Gradio deletes the files it cached), then wipe the folder outright.
    script = (
        "import sys; sys.path.insert(0, '.'); import app; "
        "app.demo.launch(prevent_thread_lock=True, server_port=int(sys.argv[1]), quiet=True); app.demo.close()"
    )
    subprocess.run(
        [sys.executable, "-c", script, str(free_port())],
        cwd=ROOT,
        env=_environment(GRADIO_TEMP_DIR=str(shared)),
        check=True,
        capture_output=True,
        timeout=180,
    )
    for entry in shared.iterdir():  # the shared folder is this test's own (tmp_path)
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for example_url, name in examples.items():
        status, body = _get(example_url)
        assert status == 200, f"{name} answers {status} once the shared temp folder is cleaned"
        assert body == expected[name].read_bytes(), f"{name} is served from the repository"
    assert _get(url + "/config")[0] == 200, "the app still runs"


def _start(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "app.py", *arguments],
        cwd=ROOT,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_app_py_answers_a_model_it_cannot_load_and_a_bad_option_with_one_error_line(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model_index.json").write_text("{not json")
    cases = {
        ("--model", str(tmp_path / "broken"), "--port", str(free_port())): "could not load the model",
        ("--model", "someuser/somerepo", "--port", str(free_port())): "could not load the model 'someuser/somerepo'",
        ("--bogus",): "unrecognized arguments: --bogus",
    }
    for arguments, message in cases.items():
        done = _start(*arguments)
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert done.returncode == 1, f"{arguments}: exit status {done.returncode}\n{done.stderr}"
        assert len(errors) == 1 and message in errors[0], f"{arguments}: {done.stderr}"
        assert "Traceback" not in done.stderr, f"{arguments}: {done.stderr}"
