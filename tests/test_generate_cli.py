"""`python -m lfdm generate` on the tiny random pipeline: files per label, their formats, and clear errors."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdm.cli import main
from lfdm.outputs import label_slug
from lfdm.video import probe_video, read_video

ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def image_file(tmp_path_factory, tiny_image):
    path = tmp_path_factory.mktemp("input") / "face.png"
    Image.fromarray(tiny_image).save(path)
    return path


@pytest.fixture(scope="module")
def generated(tiny_pipeline_dir, image_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--label", "smile",
            "--label", "frown", "--steps", "2", "--scheduler", "ddim", "--seed", "0", "--out", str(out), "--gif",
            "--device", "cpu", "--panel-size", "64"]  # fmt: skip
    assert main(argv) == 0
    return out


def test_writes_one_folder_per_label_with_every_file(generated):
    assert sorted(path.name for path in generated.iterdir()) == ["frown", "smile"]
    for label in ("smile", "frown"):
        names = {path.name for path in (generated / label).iterdir()}
        assert names == {"video.mp4", "panels.mp4", "video.gif", "flows.npz"}


def test_video_is_h264_with_every_generated_frame_at_the_photo_size(generated):
    info = probe_video(generated / "smile" / "video.mp4")
    assert info.codec == "h264" and info.num_frames == 4 and (info.width, info.height) == (48, 48), (
        "--resolution input (the default) gives the 48 px picture's size, not the 32 px model's"
    )
    assert read_video(generated / "smile" / "video.gif").shape == (4, 48, 48, 3)


@pytest.mark.parametrize(("resolution", "size"), [("model", (32, 32)), ("40", (40, 40))])
def test_resolution_flag_sets_the_video_size(tiny_pipeline_dir, image_file, tmp_path, resolution, size):
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--label", "smile",
            "--steps", "1", "--resolution", resolution, "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    info = probe_video(tmp_path / "smile" / "video.mp4")
    assert (info.width, info.height) == size


def test_face_flag_finds_the_face_of_a_photo_and_pastes_it_back(tiny_pipeline_dir, tmp_path, capsys):
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(ASTRONAUT), "--label", "smile",
            "--steps", "1", "--face", "require", "--resolution", "input", "--max-resolution", "160",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "face at (" in printed and "video 160x160 px" in printed, printed
    frames = read_video(tmp_path / "smile" / "video.mp4")
    assert frames.shape == (4, 160, 160, 3), "the 320 px photo, capped at --max-resolution 160"
    assert probe_video(tmp_path / "smile" / "panels.mp4").num_frames == 4


def test_face_require_on_a_picture_without_a_face_says_so(tiny_pipeline_dir, image_file, tmp_path, capsys):
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--face", "require",
            "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 1
    error = capsys.readouterr().err
    assert "no face was found" in error and "face='auto' or 'none'" in error, error


def test_bad_resolution_flag_is_refused(tiny_pipeline_dir, image_file, tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--resolution", "big"])
    assert "use 'input', 'model' or a number of pixels" in capsys.readouterr().err


def test_panels_put_six_tiles_side_by_side(generated):
    info = probe_video(generated / "smile" / "panels.mp4")
    assert info.num_frames == 4
    assert info.width >= 6 * 64 and info.height > 64, "six 64 px tiles and a caption bar"


def test_flows_file_holds_flows_occlusions_and_the_label(generated):
    with np.load(generated / "frown" / "flows.npz") as data:
        assert data["flows"].shape == (4, 8, 8, 2) and data["occlusions"].shape == (4, 8, 8)
        assert data["labels"].tolist() == ["frown"]
        assert 0 <= data["occlusions"].min() and data["occlusions"].max() <= 1


def test_same_seed_writes_the_same_flows(generated, tiny_pipeline_dir, image_file, tmp_path):
    argv = ["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--label", "frown",
            "--steps", "2", "--scheduler", "ddim", "--seed", "0", "--out", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    with np.load(generated / "frown" / "flows.npz") as first, np.load(tmp_path / "frown" / "flows.npz") as again:
        np.testing.assert_allclose(first["flows"], again["flows"], atol=1e-4)  # batch of 2 vs batch of 1


def test_prints_where_the_files_went(tiny_pipeline_dir, image_file, tmp_path, capsys):
    main(["generate", "--model", str(tiny_pipeline_dir), "--image", str(image_file), "--label", "surprise",
          "--steps", "1", "--scheduler", "dpmsolver", "--out", str(tmp_path)])  # fmt: skip
    assert str(tmp_path / "surprise" / "video.mp4") in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--label": "dance"}, "smile, frown, surprise"),
        ({"--steps": "0"}, "--steps must be at least 1"),
        ({"--image": "missing.png"}, "does not exist"),
    ],
)
def test_user_mistakes_give_one_clear_line(tiny_pipeline_dir, image_file, tmp_path, capsys, change, message):
    options = {"--model": str(tiny_pipeline_dir), "--image": str(image_file), "--label": "smile", "--steps": "1",
               "--out": str(tmp_path), **change}  # fmt: skip
    assert main(["generate", *[item for pair in options.items() for item in pair]]) == 1
    assert message in capsys.readouterr().err


def test_unreadable_image_is_reported(tiny_pipeline_dir, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_text("no pixels here")
    assert main(["generate", "--model", str(tiny_pipeline_dir), "--image", str(broken), "--out", str(tmp_path)]) == 1
    assert "could not read" in capsys.readouterr().err


def test_module_entry_point_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lfdm", "generate", "--model", str(tmp_path), "--image", "x.png", "--steps", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1 and result.stderr.startswith("error: --steps")


def test_label_slugs_are_safe_folder_names():
    assert label_slug("forward lunge (left foot forward)") == "forward-lunge-left-foot-forward"
    assert label_slug("I Have Command") == "i-have-command"


def test_the_commands_offer_the_pipelines_face_modes():
    from lfdm import photo
    from lfdm.commands import options

    assert options.FACE_MODES is photo.FACE_MODES, "--face lists what the pipeline's `face` accepts"


def test_the_resolution_cap_has_one_definition():
    import inspect

    from lfdm.app.service import GenerationService
    from lfdm.commands.options import add_photo_arguments
    from lfdm.framing import MAX_RESOLUTION
    from lfdm.pipeline import LFDMPipeline

    for function in (LFDMPipeline.__call__, LFDMPipeline.animate, GenerationService.__init__):
        assert inspect.signature(function).parameters["max_resolution"].default == MAX_RESOLUTION, function
    parser = argparse.ArgumentParser()
    add_photo_arguments(parser)
    assert parser.get_default("max_resolution") == MAX_RESOLUTION
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"max_resolution={MAX_RESOLUTION}" in readme and f"--max-resolution {MAX_RESOLUTION}" in readme, (
        "README's prose names the cap's value; keep it in step with lfdm.framing.MAX_RESOLUTION"
    )
