"""`python -m lfdm bench` on tiny random networks: the figures it writes, skipping a missing model, bad input.

No timing is asserted: the figures only have to exist, be positive and be consistent with each other.
"""

from __future__ import annotations

import json

import pytest

from lfdm.cli import main
from lfdm.inference_cost import Measurement, extrapolate_ddpm_video, measure

EXPECTED = {"unet_forward", "ddpm_step", "decode", "video_dpmsolver_2", "video_ddpm_1000"}
FIELDS = {"name", "shapes", "median_s", "min_s", "max_s", "runs", "peak_memory_bytes", "estimated", "note", "dtype"}


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "speed.json"
    argv = ["bench", "--tiny", "--what", "unet", "decode", "video", "--repeats", "2", "--video-repeats", "1",
            "--steps", "2", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    return json.loads(out.read_text())


def test_json_holds_every_figure_with_its_fields(record):
    results = {result["name"]: result for result in record["results"]}
    assert set(results) == EXPECTED
    for result in results.values():
        assert set(result) == FIELDS, f"{result['name']} has fields {sorted(result)}"
        assert result["min_s"] <= result["median_s"] <= result["max_s"], result


def test_timed_figures_have_runs_and_memory_estimates_do_not(record):
    results = {result["name"]: result for result in record["results"]}
    for name in EXPECTED - {"video_ddpm_1000"}:
        assert results[name]["runs"] >= 1 and results[name]["median_s"] > 0, results[name]
        assert results[name]["peak_memory_bytes"] > 0, f"{name}: no peak memory"
    assert results["video_ddpm_1000"]["estimated"] and results["video_ddpm_1000"]["runs"] == 0


def test_ddpm_estimate_is_1000_steps_plus_decode(record):
    results = {result["name"]: result for result in record["results"]}
    expected = 1000 * results["ddpm_step"]["median_s"] + results["decode"]["median_s"]
    assert results["video_ddpm_1000"]["median_s"] == pytest.approx(expected)


def test_machine_and_settings_are_recorded(record):
    machine = record["machine"]
    assert {"cpu", "cpus", "torch", "threads", "load_average", "date", "amx_bf16", "bf16_flags"} <= set(machine)
    assert machine["threads"] == 1
    assert machine["amx_bf16"] == ("amx_bf16" in machine["bf16_flags"]), "say which kind of CPU measured"
    assert record["settings"]["steps"] == "2"
    assert {result["dtype"] for result in record["results"]} == {"float32"}


def test_several_dtypes_are_measured_in_one_run(tmp_path):
    out = tmp_path / "dtypes.json"
    argv = ["bench", "--tiny", "--what", "decode", "--repeats", "1", "--threads", "1",
            "--dtype", "float32", "bfloat16", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = {result["name"]: result for result in json.loads(out.read_text())["results"]}
    assert set(results) == {"decode [float32]", "decode [bfloat16]"}
    assert [result["dtype"] for result in results.values()] == ["float32", "bfloat16"]


def test_missing_model_is_skipped_with_a_message(tmp_path, capsys):
    argv = ["bench", "--tiny", "--what", "shipped", "--model", str(tmp_path / "none"), "--threads", "1",
            "--json", str(tmp_path / "s.json")]  # fmt: skip
    assert main(argv) == 0
    assert "skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "s.json").read_text())["results"] == []


def test_shipped_model_is_timed_per_scheduler(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "shipped.json"
    argv = ["bench", "--tiny", "--what", "shipped", "--model", str(tiny_pipeline_dir), "--schedulers", "ddim",
            "unipc", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    names = [result["name"] for result in json.loads(out.read_text())["results"]]
    assert names == ["shipped_ddim_50", "shipped_unipc_25"]


def test_photo_path_is_timed_against_the_model_size_path(tiny_pipeline_dir, tmp_path):
    out = tmp_path / "photo.json"
    argv = ["bench", "--tiny", "--what", "photo", "--model", str(tiny_pipeline_dir), "--steps", "1", "--repeats",
            "1", "--video-repeats", "1", "--threads", "1", "--json", str(out)]  # fmt: skip
    assert main(argv) == 0
    results = {result["name"]: result for result in json.loads(out.read_text())["results"]}
    assert list(results) == ["photo_model_size_video", "photo_512_video", "photo_512_overhead"]
    assert all(result["median_s"] > 0 for result in results.values())


def test_bad_repeats_is_a_clear_error(capsys):
    assert main(["bench", "--tiny", "--repeats", "0"]) == 1
    assert "--repeats must be at least 1" in capsys.readouterr().err


def test_measure_times_after_a_warm_up_call():
    calls = []
    result = measure("count", "-", lambda: calls.append(1), repeats=3, device="cpu")
    assert len(calls) == 4 and result.runs == 3 and isinstance(result, Measurement)


def test_extrapolation_scales_the_step_time():
    step = Measurement("ddpm_step", "-", median_s=2.0, min_s=1.0, max_s=3.0, runs=3)
    decode = Measurement("decode", "-", median_s=5.0, min_s=4.0, max_s=6.0, runs=3)
    video = extrapolate_ddpm_video(step, decode, steps=10)
    assert (video.median_s, video.min_s, video.max_s) == (25.0, 14.0, 36.0) and video.estimated
