"""Training logs: a JSONL record per logged step, running means of the losses, the loss curve and the progress bar."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class JsonlLogger:
    """Appends one JSON object per call to a `.jsonl` file (flushed at once, so a crash loses nothing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def log(self, step: int, **values: float) -> None:
        record = {"step": step, **{key: float(value) for key, value in values.items()}}
        with self.path.open("a") as file:
            file.write(json.dumps(record) + "\n")

    def truncate_after(self, step: int) -> None:
        """Drop records past `step` (a resumed run re-logs the steps after its checkpoint)."""
        if not self.path.is_file():
            return
        records = read_jsonl(self.path)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """All records of a `.jsonl` file."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_loss_curve(log_path: str | Path, png_path: str | Path, *, keys: list[str] | None = None) -> Path | None:
    """Plot every logged loss (all numeric keys except step, lr and timing) against the step (log y axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_jsonl(log_path) if Path(log_path).is_file() else []
    if not records:
        return None
    skip = {"step", "lr", "seconds_per_step"}
    keys = keys or sorted({k for r in records for k in r if k not in skip})
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r and r[key] > 0]
        if points:
            steps, values = zip(*points, strict=True)
            axis.plot(steps, values, label=key, linewidth=1.2 if key == "loss" else 0.8)
    axis.set_yscale("log")
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(png_path)
    plt.close(figure)
    return Path(png_path)


class LossWindow:
    """Running means of the loss terms and the time per step since the last log line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.start = time.perf_counter()

    def add(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.steps += 1

    def summary(self) -> dict[str, float]:
        """The means of every term plus `seconds_per_step`; then starts a new window."""
        steps = max(self.steps, 1)
        means = {name: total / steps for name, total in self.sums.items()}
        means["seconds_per_step"] = (time.perf_counter() - self.start) / steps
        self.reset()
        return means


def log_means(window: LossWindow, step: int, max_steps: int, *, progress, log: JsonlLogger, lr: float, main: bool):
    """Closes the window: its means go to the progress bar, the JSONL log and, when there is no progress bar
    (stderr not a terminal, e.g. a run in the background), one log line that says how far the run is."""
    means = window.summary()
    progress.set_postfix(loss=f"{means['loss']:.4f}")
    if main:
        log.log(step, **means, lr=lr)
        if progress.disable:
            logger.info("step %d/%d loss %.4f (%.2f s/step)", step, max_steps, means["loss"], means["seconds_per_step"])


def progress_bar(total: int, initial: int, *, enabled: bool):
    """tqdm over optimiser steps; hidden on other processes and when stderr is not a terminal."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=None if enabled else True, dynamic_ncols=True, unit="step")
