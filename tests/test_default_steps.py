"""A model's default sampling steps: chosen from measured scores, saved with the model, used when none are asked."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

from lfdm.cli import main
from lfdm.evaluation.default_steps import QualityBar, choose_default_steps, write_default_steps
from lfdm.evaluation.generation import parse_sampler_settings
from lfdm.pipeline import LFDMPipeline
from lfdm.schedulers import (
    DEFAULT_STEPS,
    MODEL_DEFAULT_STEPS_KEY,
    default_steps,
    make_scheduler,
    sampler_name,
    set_default_steps,
)
from lfdm.testing import make_tiny_pipeline


def row(steps, accuracy=1.0, fcd_ratio=0.57, psnr=36.5, scheduler="dpmsolver", guidance=1.0, seconds=None):
    """One sampler row as `python -m lfdm evaluate` writes it (the fields the choice reads)."""
    return {
        "scheduler": scheduler, "steps": steps, "guidance": guidance, "action_accuracy": accuracy,
        "fcd_ratio": fcd_ratio, "frame0_psnr": psnr, "seconds_per_video": steps / 10 if seconds is None else seconds,
    }  # fmt: skip


# --- choosing --------------------------------------------------------------------------------------------------------


def test_chooses_the_fewest_steps_as_good_as_the_reference():
    # the measurement: DPM-Solver++ 25 / 4 / 2 at 0.57x / 0.58x / 0.70x the floor
    choice = choose_default_steps([row(25, psnr=36.45), row(4, fcd_ratio=0.58, psnr=37.35), row(2, fcd_ratio=0.70)])
    assert choice.reference["steps"] == 25
    assert (choice.scheduler, choice.steps) == ("dpmsolver", 4), choice.table()
    assert [bool(verdict.failures) for verdict in choice.verdicts] == [False, False, True]
    assert "FCD 0.70x floor > 0.65x" in choice.table()


@pytest.mark.parametrize(
    ("cheap", "reason"),
    [
        (row(2, accuracy=0.97), "accuracy 97.0 % < 98 %"),
        (row(2, psnr=34.9), "frame 0 34.90 dB < 35 dB"),
        (row(2, fcd_ratio=0.63), "FCD 0.63x floor > the reference's 0.50x + 0.05"),  # under 0.65x, but worse
        (row(2, fcd_ratio=None), "no FCD floor"),
    ],
)
def test_each_bar_rejects_a_cheaper_setting(cheap, reason):
    choice = choose_default_steps([row(25, fcd_ratio=0.50), row(8, fcd_ratio=0.52), cheap])
    assert choice.steps == 8
    assert any(reason in failure for failure in choice.verdicts[-1].failures), choice.verdicts[-1].failures


def test_a_lucky_pass_below_a_failing_count_is_not_taken():
    choice = choose_default_steps([row(25), row(6), row(4, accuracy=0.9), row(3)])
    assert choice.steps == 6, "3 steps passes, but 4 fails: the pass at 3 is noise"
    assert not choice.verdicts[3].failures and not choice.verdicts[3].eligible
    assert "a larger count fails" in choice.table()


def test_only_the_default_guidance_counts_and_the_reference_is_the_most_steps():
    rows = [row(50, scheduler="ddim", guidance=2.0), row(10, scheduler="ddim"), row(2, scheduler="ddim", psnr=30.0),
            row(1000, scheduler="ddpm", guidance=2.0)]  # fmt: skip
    choice = choose_default_steps(rows)
    assert choice.reference["steps"] == 10 and (choice.scheduler, choice.steps) == ("ddim", 10)
    with pytest.raises(ValueError, match="no sampler setting at guidance 3"):
        choose_default_steps(rows, guidance=3.0)


def test_equal_counts_prefer_the_faster_sampler():
    choice = choose_default_steps([row(25), row(4, seconds=0.9), row(4, scheduler="unipc", seconds=0.5)])
    assert (choice.scheduler, choice.steps) == ("unipc", 4)


def test_nothing_is_chosen_when_even_the_reference_falls_short():
    choice = choose_default_steps([row(25, accuracy=0.5), row(4)], bar=QualityBar())
    assert choice.chosen is None and choice.steps is None
    assert "keep the current default" in choice.summary()


# --- the count saved with the model ----------------------------------------------------------------------------------


def test_the_schedulers_without_a_measured_count_keep_their_usual_counts():
    for name, steps in DEFAULT_STEPS.items():
        scheduler = make_scheduler(name)
        assert sampler_name(scheduler) == name and default_steps(scheduler) == steps


def test_a_measured_count_belongs_to_its_sampler_only():
    scheduler = set_default_steps(make_scheduler("dpmsolver"), 4)
    assert default_steps(scheduler) == 4
    assert default_steps(make_scheduler("dpmsolver", base_config=scheduler.config)) == 4, "make_scheduler keeps it"
    ddim = DDIMScheduler.from_config(scheduler.config)  # diffusers' way of swapping samplers carries the key along
    assert ddim.config[MODEL_DEFAULT_STEPS_KEY] == {"dpmsolver": 4}
    assert default_steps(ddim) == DEFAULT_STEPS["ddim"], "a count measured for DPM-Solver++ is not DDIM's"
    assert default_steps(set_default_steps(ddim, 10)) == 10 and ddim.config[MODEL_DEFAULT_STEPS_KEY]["dpmsolver"] == 4
    with pytest.raises(ValueError, match="whole number >= 1"):
        set_default_steps(scheduler, 0)


def _count_steps(pipe, **kwargs) -> int:
    steps = []
    pipe(torch.rand(1, 3, 32, 32), "smile", output_type="pt", face="none",
         callback_on_step_end=lambda p, i, t, kw: steps.append(i) or {}, **kwargs)  # fmt: skip
    return len(steps)


def test_the_default_survives_save_pretrained_and_from_pretrained(tmp_path):
    pipe = make_tiny_pipeline()
    assert pipe.default_num_inference_steps == DEFAULT_STEPS["ddim"], "saved without one: the usual count"
    set_default_steps(pipe.scheduler, 3)
    pipe.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler" / "scheduler_config.json").read_text())
    assert saved[MODEL_DEFAULT_STEPS_KEY] == {"ddim": 3}
    loaded = LFDMPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, DDIMScheduler) and loaded.default_num_inference_steps == 3
    assert _count_steps(loaded) == 3, "num_inference_steps=None samples the saved count"
    assert _count_steps(loaded, num_inference_steps=2) == 2, "an explicit count still wins"
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "scheduler" / "scheduler_config.json").read_text())
    assert again == saved, "a second save writes the same scheduler config"


def test_write_default_steps_sets_the_count_and_can_switch_the_sampler(tiny_pipeline_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    write_default_steps(folder, "ddim", 7)
    assert LFDMPipeline.from_pretrained(folder).default_num_inference_steps == 7
    write_default_steps(folder, "dpmsolver", 4)
    assert json.loads((folder / "model_index.json").read_text())["scheduler"] == [
        "diffusers",
        "DPMSolverMultistepScheduler",
    ]
    loaded = LFDMPipeline.from_pretrained(folder)
    assert isinstance(loaded.scheduler, DPMSolverMultistepScheduler), "the chosen sampler becomes the model's"
    assert loaded.scheduler.config[MODEL_DEFAULT_STEPS_KEY] == {"ddim": 7, "dpmsolver": 4}
    assert loaded.default_num_inference_steps == 4
    with pytest.raises(FileNotFoundError, match="not a local pipeline folder"):
        write_default_steps(tmp_path / "nowhere", "ddim", 4)


def test_choose_default_command_prints_the_choice_and_writes_it(tiny_pipeline_dir, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(tiny_pipeline_dir, folder)
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"samplers": [row(50, scheduler="ddim"), row(5, scheduler="ddim"),
                                                   row(2, scheduler="ddim", accuracy=0.5)]}))  # fmt: skip
    assert main(["choose-default", "--evaluation", str(evaluation), "--model", str(folder)]) == 0
    assert "default: ddim:5" in capsys.readouterr().out
    assert LFDMPipeline.from_pretrained(folder).default_num_inference_steps == 50, "nothing written without --write"
    assert main(["choose-default", "--evaluation", str(evaluation), "--model", str(folder), "--write"]) == 0
    assert LFDMPipeline.from_pretrained(folder).default_num_inference_steps == 5
    assert main(["choose-default", "--evaluation", str(tmp_path / "missing.json")]) == 1
    assert "no evaluation at" in capsys.readouterr().err


def test_an_evaluated_config_without_steps_takes_the_models_count():
    measured = {"dpmsolver": 4}
    settings = parse_sampler_settings("dpmsolver,ddim,ddim:7", "1.0", default_steps=lambda name: measured.get(name, 50))
    assert [(s.scheduler, s.steps) for s in settings] == [("dpmsolver", 4), ("ddim", 50), ("ddim", 7)]
    assert parse_sampler_settings("dpmsolver")[0].steps == DEFAULT_STEPS["dpmsolver"], "without a model: the usual"
