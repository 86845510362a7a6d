"""Training infrastructure shared by both stages: run folders, Accelerate, checkpoints, logs and the data stream.

A run folder looks like

    <run>/config.yaml            the resolved config (a run can be reproduced or resumed from its folder)
    <run>/log.jsonl              one JSON object per logged step
    <run>/loss_curve.png         the logged losses against the step
    <run>/samples/step-<n>.png   picture grids
    <run>/checkpoint-<n>/        accelerator.save_state (weights, optimiser, scheduler, RNG states),
                                 model/ (the unwrapped model's save_pretrained), training_state.json {"step": n}
    <run>/model/                 the final save_pretrained folder

Exact resume: the weights, optimiser, scheduler and RNG states come back through `accelerator.load_state`, the step
from `training_state.json`, and the data are a deterministic function of (seed, sample number) (`SampleStream`),
so a resumed run sees the very batches the uninterrupted run would have seen.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lfdm.data.factory import DataConfig, build_dataset
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


def init_weights(model: torch.nn.Module, source: torch.nn.Module, name: str) -> None:
    """Copy the weights of `source` (same architecture) into `model`: a warm start.

    Every parameter of `source` must exist in `model` with the same shape. `model`'s own values are kept for
    tensors that `source` lacks (new in this config, such as the U-Net's `frame_positions`) and for buffers whose
    shape follows from the config, not from training (the anti-aliasing kernels of a changed
    `region_scale_factor`); buffers of `source` that `model` has no use for (the kernel, at
    `region_scale_factor: 1`) are left out. All three are logged.
    """
    parameters = {key for key, _ in model.named_parameters()}
    source_parameters = {key for key, _ in source.named_parameters()}
    own, theirs = model.state_dict(), source.state_dict()
    unused = [key for key in theirs if key not in own and key not in source_parameters]
    theirs = {key: value for key, value in theirs.items() if key not in unused}
    kept = [key for key in own if key not in theirs or (key not in parameters and theirs[key].shape != own[key].shape)]
    model.load_state_dict({**theirs, **{key: own[key] for key in kept}})
    if kept:
        logger.info("%s: kept this config's own %s (new, or shaped by the config)", name, kept)
    if unused:
        logger.info("%s: left out the source's %s (buffers this config does not use)", name, unused)


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


# ---------------------------------------------------------------------------------------------------------------------
# Logs


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


# ---------------------------------------------------------------------------------------------------------------------
# Data


# Items per SynthFace "epoch": the stream's shuffling unit; every epoch renders new videos (`set_epoch`).
SYNTHFACE_EPOCH_LENGTH = 100_000


def training_dataset(data: DataConfig, *, view: str) -> Dataset:
    """The training split a `DataConfig` names, in the `view` "pair" (stage one) or "clip" (stage two); SynthFace
    as a virtual data set of `SYNTHFACE_EPOCH_LENGTH` items per epoch.

    Real videos draw their frames and augmentations from torch's global generator, which `SampleStream` seeds per
    sample, so the stream stays reproducible.
    """
    return build_dataset(data, view=view, split="train", length=SYNTHFACE_EPOCH_LENGTH)


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators inside the block; restore their states after it."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**63)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


class SampleStream(Dataset):
    """An endless, reproducible stream over a data set: item `n` is a pure function of (seed, n).

    Sample numbers run through shuffled epochs (epoch e uses permutation(seed, e)); each item is produced with the
    global RNGs seeded from (seed, n), so random pair choices and augmentations repeat exactly on resume.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError("the training data set is empty; check data.root and data.preset.")
        self._permutations: dict[int, np.ndarray] = {}

    def _index(self, sample: int) -> int:
        epoch, position = divmod(sample, self.size)
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return int(self._permutations[epoch][position])

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, sample: int):
        if hasattr(self.dataset, "set_epoch"):  # virtual data sets (SynthFace) draw new videos every epoch
            self.dataset.set_epoch(sample // self.size)
        item_seed = int(np.random.SeedSequence([self.seed, sample]).generate_state(1, np.uint64)[0])
        with seeded_global_rngs(item_seed):
            return self.dataset[self._index(sample)]


class StreamBatchSampler(Sampler[list[int]]):
    """Batches of sample numbers for one process, starting at micro-batch `start`.

    Micro-batch q of process p holds samples ((q * world + p) * batch_size + j for j < batch_size), so every
    process reads its own slice and the stream depends only on the micro-batch number.
    """

    def __init__(self, batch_size: int, *, start: int = 0, process_index: int = 0, num_processes: int = 1) -> None:
        self.batch_size, self.start = batch_size, start
        self.process_index, self.num_processes = process_index, num_processes

    def __iter__(self) -> Iterator[list[int]]:
        micro_batch = self.start
        while True:
            first = (micro_batch * self.num_processes + self.process_index) * self.batch_size
            yield list(range(first, first + self.batch_size))
            micro_batch += 1

    def __len__(self) -> int:
        return 2**62


def stream_loader(dataset: Dataset, *, seed: int, batch_size: int, start: int, accelerator, num_workers: int):
    """An endless DataLoader for this process that begins at micro-batch `start` of the (seed)-stream."""
    sampler = StreamBatchSampler(
        batch_size, start=start, process_index=accelerator.process_index, num_processes=accelerator.num_processes
    )
    return DataLoader(
        SampleStream(dataset, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=num_workers > 0,
    )
