"""Run folders, Accelerate and checkpoints, for both training stages (`lfdm.training.loop`).

A run folder looks like

    <run>/config.yaml            the resolved config of the stage (a run can be reproduced or resumed from its folder)
    <run>/log.jsonl              one JSON object per logged step
    <run>/loss_curve.png         the logged losses against the step
    <run>/samples/step-<n>.*     sample pictures (and videos)
    <run>/checkpoint-<n>/        accelerator.save_state (weights, optimiser, scheduler, RNG states),
                                 model/ (the stage's export, save_pretrained), training_state.json {"step": n}
    <run>/model/                 the final save_pretrained folder

Exact resume: the weights, optimiser, scheduler and RNG states come back through `accelerator.load_state`, the step
from `training_state.json`, and the data are a deterministic function of (seed, sample number)
(`lfdm.training.stream.SampleStream`), so a resumed run sees the very batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shutil
from pathlib import Path

import torch

from lfdm.training.config import RunConfig, save_config

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TRAINING_STATE_FILE = "training_state.json"
CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
LOSS_CURVE_FILE = "loss_curve.png"


# ---------------------------------------------------------------------------------------------------------------------
# Run folders and Accelerate


def default_run_dir(stage: str, config_name: str) -> Path:
    """`runs/<stage>-<config name>-<YYYYmmdd-HHMMSS>`: a fresh folder name without spaces."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / re.sub(r"\s+", "_", f"{stage}-{config_name}-{stamp}")


def prepare_run_dir(
    run_dir: str | Path, config: RunConfig, *, resuming: bool, is_main_process: bool = True, stage: str | None = None
) -> Path:
    """Create the run folder and write `config.yaml` into it (the sections `stage` reads, or all).

    A new run refuses a folder that already holds checkpoints (pass `--resume` to continue it instead).
    """
    run_dir = Path(run_dir)
    if any(c.isspace() for c in run_dir.name):
        raise ValueError(f"run folder names must not contain spaces; got {run_dir.name!r}.")
    if not resuming and list_checkpoints(run_dir):
        raise ValueError(
            f"{run_dir} already holds checkpoints of a run. Continue it with `--resume {run_dir}`, or choose "
            "another --output-dir."
        )
    if is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(config, run_dir / CONFIG_FILE, stage)
    return run_dir


def resolve_mixed_precision(mode: str) -> str:
    """'auto' -> 'bf16' on a GPU that supports it, 'fp16' on other GPUs, 'no' on CPU; other modes unchanged."""
    if mode != "auto":
        return mode
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "no"


def make_accelerator(mixed_precision: str, gradient_accumulation_steps: int = 1):
    """An `Accelerator` for this process (CPU, one GPU, or one rank of `accelerate launch`)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    mixed_precision = resolve_mixed_precision(mixed_precision)
    # Accelerate keeps one state per process and refuses a second precision; a process that trains twice
    # (a notebook, the tests) starts the second run from a clean state.
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()
    return Accelerator(
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=gradient_accumulation_steps,
        log_with=None,
    )


# ---------------------------------------------------------------------------------------------------------------------
# Checkpoints


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """The complete `checkpoint-<step>` folders of a run, oldest first."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.glob(f"{CHECKPOINT_PREFIX}*") if (p / TRAINING_STATE_FILE).is_file()]
    return sorted(found, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX) :]))


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint folder from `--resume`: the folder itself, or the latest checkpoint of a run folder."""
    path = Path(path)
    if (path / TRAINING_STATE_FILE).is_file():
        return path
    checkpoints = list_checkpoints(path)
    if not checkpoints:
        raise FileNotFoundError(
            f"no checkpoint in {str(path)!r}: pass a run folder that holds checkpoint-<step> folders, or one of them."
        )
    return checkpoints[-1]


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint folder belongs to."""
    return checkpoint.parent


def save_checkpoint(accelerator, run_dir: Path, step: int, model, *, keep_last: int) -> Path:
    """Save everything needed to resume at `step` into `<run>/checkpoint-<step>`; keep the last `keep_last`.

    Called on every process (each saves its RNG states); the main process writes the model folder and prunes.
    `model` is the unwrapped `ModelMixin` whose `save_pretrained` folder goes into `checkpoint-<step>/model`.
    """
    checkpoint = run_dir / f"{CHECKPOINT_PREFIX}{step}"
    accelerator.save_state(str(checkpoint))
    if accelerator.is_main_process:
        model.save_pretrained(checkpoint / "model")
        # Written last: a folder with this file is complete (an interrupted save is never resumed from).
        (checkpoint / TRAINING_STATE_FILE).write_text(json.dumps({"step": step}))
        for old in list_checkpoints(run_dir)[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    logger.info("saved checkpoint %s", checkpoint)
    return checkpoint


def load_checkpoint(accelerator, checkpoint: Path) -> int:
    """Restore weights, optimiser, scheduler and RNG states from a checkpoint folder; returns its step."""
    accelerator.load_state(str(checkpoint))
    return int(json.loads((checkpoint / TRAINING_STATE_FILE).read_text())["step"])
