"""Choosing a model's default sampling steps by measurement, and writing the choice into its pipeline folder.

`choose_default_steps` reads the sampler rows of an evaluation (`lfdm.evaluation.generation`, the "samplers" of
`python -m lfdm evaluate`'s JSON) and picks the cheapest setting whose quality equals the reference, the setting
with the most steps: the same action accuracy, FCD and frame-0 PSNR within the margins of `QualityBar`. A setting
qualifies only when every measured count of its sampler from it up to the most steps passes as well, so a lucky
pass below a failing count is not taken. `write_default_steps` records the choice in the scheduler's config
(`lfdm.schedulers.set_default_steps`), where the pipeline reads it when called without `num_inference_steps`.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class QualityBar:
    """When a sampler setting counts as good as the reference (the setting with the most steps)."""

    min_accuracy: float = 0.98  # action accuracy, fraction of generated videos the classifier gives their label
    max_fcd_ratio: float = 0.65  # FCD / its real-vs-real floor
    max_fcd_ratio_over_reference: float = 0.05  # and at most this much above the reference's FCD / floor
    min_frame0_psnr: float = 35.0  # dB, generated frame 0 against the input frame

    def failures(self, row: Mapping, reference: Mapping) -> list[str]:
        """Why `row` falls short of the bar (empty when it passes); rows are `SamplerScores` dictionaries."""
        found = []
        if row["action_accuracy"] < self.min_accuracy:
            found.append(f"accuracy {row['action_accuracy'] * 100:.1f} % < {self.min_accuracy * 100:g} %")
        ratio, reference_ratio = row.get("fcd_ratio"), reference.get("fcd_ratio")
        if ratio is None or reference_ratio is None:
            found.append("no FCD floor to compare with (the floor is 0)")
        elif ratio > self.max_fcd_ratio:
            found.append(f"FCD {ratio:.2f}x floor > {self.max_fcd_ratio:g}x")
        elif ratio > reference_ratio + self.max_fcd_ratio_over_reference:
            margin = self.max_fcd_ratio_over_reference
            found.append(f"FCD {ratio:.2f}x floor > the reference's {reference_ratio:.2f}x + {margin:g}")
        if row["frame0_psnr"] < self.min_frame0_psnr:
            found.append(f"frame 0 {row['frame0_psnr']:.2f} dB < {self.min_frame0_psnr:g} dB")
        return found


@dataclass(frozen=True)
class Verdict:
    """One sampler setting judged against the reference: `failures` empty = it passes; `eligible` = it and every
    larger count of its sampler pass."""

    row: Mapping
    failures: tuple[str, ...]
    eligible: bool

    @property
    def name(self) -> str:
        return f"{self.row['scheduler']}:{self.row['steps']}"


@dataclass(frozen=True)
class DefaultStepsChoice:
    """What `choose_default_steps` found: the reference, every verdict (in the evaluation's order) and the choice
    (None when no setting reaches the bar, not even the reference)."""

    reference: Mapping
    verdicts: tuple[Verdict, ...]
    chosen: Verdict | None
    bar: QualityBar

    @property
    def scheduler(self) -> str | None:
        return None if self.chosen is None else str(self.chosen.row["scheduler"])

    @property
    def steps(self) -> int | None:
        return None if self.chosen is None else int(self.chosen.row["steps"])

    def table(self) -> str:
        """Plain text: one line per setting with its scores and verdict, then the choice."""
        header = ["sampler", "steps", "accuracy %", "FCD / floor", "frame-0 PSNR", "s / video", "verdict"]
        rows = [header] + [_cells(verdict, verdict is self.chosen) for verdict in self.verdicts]
        widths = [max(len(row[index]) for row in rows) for index in range(len(header) - 1)]
        lines = ["  ".join([*(cell.rjust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]) for row in rows]
        return "\n".join([*lines, "", self.summary()])

    def summary(self) -> str:
        reference = f"{self.reference['scheduler']}:{self.reference['steps']}"
        if self.chosen is None:
            return f"no setting reaches the bar, not even the reference {reference}: keep the current default."
        return (
            f"default: {self.chosen.name} (the fewest steps as good as the reference {reference}: accuracy >= "
            f"{self.bar.min_accuracy * 100:g} %, FCD <= {self.bar.max_fcd_ratio:g}x the floor and <= the "
            f"reference's + {self.bar.max_fcd_ratio_over_reference:g}, frame 0 >= {self.bar.min_frame0_psnr:g} dB)"
        )


def _cells(verdict: Verdict, chosen: bool) -> list[str]:
    row = verdict.row
    ratio = "" if row.get("fcd_ratio") is None else f"{row['fcd_ratio']:.2f}"
    if chosen:
        word = "chosen"
    elif verdict.failures:
        word = "fails: " + "; ".join(verdict.failures)
    else:
        word = "passes" if verdict.eligible else "passes, but a larger count fails"
    return [
        str(row["scheduler"]), str(row["steps"]), f"{row['action_accuracy'] * 100:.1f}", ratio,
        f"{row['frame0_psnr']:.2f}", f"{row.get('seconds_per_video', float('nan')):.2f}", word,
    ]  # fmt: skip


def choose_default_steps(
    rows: Sequence[Mapping], *, bar: QualityBar = QualityBar(), guidance: float = 1.0
) -> DefaultStepsChoice:
    """The cheapest sampler setting as good as the reference (module docstring).

    rows: `SamplerScores` as dictionaries (`scheduler`, `steps`, `guidance`, `action_accuracy`, `fcd_ratio`,
    `frame0_psnr`, optionally `seconds_per_video`). Only rows at `guidance` count: the default is a step count for
    the pipeline's default guidance. The reference is the row with the most steps (the first of equals); the choice
    is the eligible row with the fewest steps, the faster one (seconds per video) between equals.
    Raises ValueError when no row has that guidance.
    """
    rows = [row for row in rows if float(row["guidance"]) == float(guidance)]
    if not rows:
        raise ValueError(
            f"no sampler setting at guidance {guidance:g} in the evaluation; evaluate with --guidance {guidance:g}."
        )
    reference = max(rows, key=lambda row: int(row["steps"]))  # max keeps the first of equals
    failures = [tuple(bar.failures(row, reference)) for row in rows]

    def eligible(index: int) -> bool:
        row = rows[index]
        same_sampler = [
            other for other, row_other in enumerate(rows)
            if row_other["scheduler"] == row["scheduler"] and int(row_other["steps"]) >= int(row["steps"])
        ]  # fmt: skip
        return all(not failures[other] for other in same_sampler)

    verdicts = tuple(Verdict(row, failures[i], eligible(i)) for i, row in enumerate(rows))
    candidates = [verdict for verdict in verdicts if verdict.eligible]
    chosen = min(
        candidates,
        key=lambda verdict: (int(verdict.row["steps"]), verdict.row.get("seconds_per_video", 0.0)),
        default=None,
    )
    return DefaultStepsChoice(reference=reference, verdicts=verdicts, chosen=chosen, bar=bar)


def read_sampler_rows(path: str | Path) -> list[dict]:
    """The sampler rows of an evaluation JSON written by `python -m lfdm evaluate --out`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation at {path}; write one with python -m lfdm evaluate --out {path}.")
    record = json.loads(path.read_text())
    if not isinstance(record, dict) or not isinstance(record.get("samplers"), list):
        raise ValueError(f"{path} holds no 'samplers' list; is it the JSON of python -m lfdm evaluate --out?")
    return record["samplers"]


def write_default_steps(model_dir: str | Path, scheduler_name: str, steps: int) -> Path:
    """Make `scheduler_name` with `steps` the default of the pipeline folder `model_dir`; returns the written
    scheduler config.

    When the folder's scheduler is another sampler, it is replaced by `scheduler_name` on the same schedule
    (`lfdm.schedulers.make_scheduler`) and `model_index.json` names the new class; the weights are not touched.
    """
    from diffusers import SchedulerMixin

    from lfdm.schedulers import make_scheduler, sampler_name, set_default_steps

    model_dir = Path(model_dir)
    index_path = model_dir / "model_index.json"
    if not (model_dir / "scheduler" / "scheduler_config.json").is_file() or not index_path.is_file():
        raise FileNotFoundError(
            f"{model_dir} is not a local pipeline folder (model_index.json and scheduler/scheduler_config.json); "
            "the default is written into a folder written by save_pretrained."
        )
    index = json.loads(index_path.read_text())
    library, class_name = index["scheduler"]
    scheduler_class = getattr(importlib.import_module(library), class_name)
    scheduler: SchedulerMixin = scheduler_class.from_pretrained(model_dir, subfolder="scheduler")
    if sampler_name(scheduler) != scheduler_name:
        scheduler = make_scheduler(scheduler_name, base_config=scheduler.config)
        index["scheduler"] = ["diffusers", type(scheduler).__name__]
        index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    set_default_steps(scheduler, steps)
    scheduler.save_pretrained(model_dir / "scheduler")
    return model_dir / "scheduler" / "scheduler_config.json"
