"""The training loop of both stages: Accelerate, the run folder, resume, the data stream, the log / sample /
checkpoint schedule and the export. A stage (`lfdm.training.lfae`, `lfdm.training.dm`) plugs in a `Stage`: it
builds its model and data, computes one micro-batch's losses, writes samples and says what to export.

One optimiser step: for each of `gradient_accumulation_steps` micro-batches, the stage's losses under
`accelerator.accumulate`, backward, clip the gradient norm when the gradients sync, step Adam; then step the
MultiStepLR schedule, the stage's own per-step state (the EMA), log, draw samples and checkpoint on their schedules.
The run folder's layout and what makes resuming exact are in `lfdm.training.runs`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from lfdm.training.config import RunConfig
from lfdm.training.logs import JsonlLogger, LossWindow, log_means, progress_bar, write_loss_curve
from lfdm.training.runs import (
    LOG_FILE,
    LOSS_CURVE_FILE,
    default_run_dir,
    find_checkpoint,
    load_checkpoint,
    make_accelerator,
    prepare_run_dir,
    run_dir_of,
    save_checkpoint,
)
from lfdm.training.stream import stream_loader

logger = logging.getLogger(__name__)


class Stage(ABC):
    """What a training stage plugs into `train`. `name` prefixes default run folders; `config` is the whole run
    config and `train` its stage section (`AutoencoderTrainConfig` or `FlowDiffusionTrainConfig`), whose schedule,
    optimiser and bookkeeping fields the loop reads."""

    name: str
    config: RunConfig
    train: Any

    @abstractmethod
    def build(self, accelerator) -> tuple[nn.Module, Dataset]:
        """The module whose parameters Adam trains (not yet prepared) and the data set the stream runs over."""

    def prepared(self, accelerator, training_model: nn.Module) -> None:  # noqa: B027 (an optional hook: does nothing unless a stage needs it)
        """After `accelerator.prepare`: register state that must be checkpointed besides the lr schedule."""

    @abstractmethod
    def losses(self, accelerator, training_model: nn.Module, batch, micro_batch: int) -> dict[str, torch.Tensor]:
        """One micro-batch's scalar losses: "loss" (back-propagated) and any terms to log; `micro_batch` numbers
        the micro-batches of the run, for randomness that must repeat on resume."""

    def after_step(self, model: nn.Module, step: int) -> None:  # noqa: B027 (an optional hook: does nothing unless a stage needs it)
        """After optimiser step `step` (1-based), with the unwrapped model."""

    def prepare_samples(self, dataset: Dataset) -> None:  # noqa: B027 (an optional hook: does nothing unless a stage needs it)
        """On the main process, before the first step: fix what the sample pictures show."""

    def write_samples(self, model: nn.Module, stem: Path) -> None:  # noqa: B027 (an optional hook: does nothing unless a stage needs it)
        """Write the sample pictures of the unwrapped model to `<stem>.*`."""

    @abstractmethod
    def export(self, model: nn.Module):
        """What a checkpoint's `model/` and the run's `model/` hold: an object with `save_pretrained(folder)`."""


def train(stage: Stage, resume: str | None = None) -> Path:
    """Run `stage` for `stage.train.max_steps` optimiser steps; `resume`: a run folder or checkpoint folder to
    continue. Returns the run folder; its `model/` holds `stage.export(...)`."""
    config, settings = stage.config, stage.train
    accelerator = make_accelerator(settings.mixed_precision, settings.gradient_accumulation_steps)
    checkpoint = find_checkpoint(resume) if resume else None
    run_dir = _run_dir(stage, checkpoint)
    resuming, main = checkpoint is not None, accelerator.is_main_process
    prepare_run_dir(run_dir, config, resuming=resuming, is_main_process=main, stage=stage.name)
    accelerator.wait_for_everyone()

    # model, data, optimiser and schedule
    model, dataset = stage.build(accelerator)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.learning_rate, betas=settings.adam_betas)
    lr_schedule = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=settings.milestone_steps(), gamma=settings.lr_decay
    )
    training_model, optimizer = accelerator.prepare(model, optimizer)
    # The schedule steps once per optimiser step on every process (not once per process, as a prepared one would).
    accelerator.register_for_checkpointing(lr_schedule)
    stage.prepared(accelerator, training_model)

    step = load_checkpoint(accelerator, checkpoint) if checkpoint is not None else 0
    if checkpoint is not None:
        logger.info("resumed from %s at step %d", checkpoint, step)
    batches = iter(
        stream_loader(
            dataset,
            seed=settings.seed,
            batch_size=settings.batch_size,
            start=step * settings.gradient_accumulation_steps,  # the stream counts micro-batches
            accelerator=accelerator,
            num_workers=config.data.num_workers,
        )
    )
    log = JsonlLogger(run_dir / LOG_FILE)
    if main:
        log.truncate_after(step)
        stage.prepare_samples(dataset)

    progress = progress_bar(settings.max_steps, step, enabled=main)
    window = LossWindow()
    while step < settings.max_steps:
        window.add(optimisation_step(stage, accelerator, training_model, optimizer, batches, step))
        if not accelerator.optimizer_step_was_skipped:  # fp16 overflow: no step, so no schedule step either
            lr_schedule.step()
        step += 1
        unwrapped = accelerator.unwrap_model(training_model)
        stage.after_step(unwrapped, step)
        progress.update(1)

        if step % settings.log_every == 0 or step == settings.max_steps:
            lr = lr_schedule.get_last_lr()[0]
            log_means(window, step, settings.max_steps, progress=progress, log=log, lr=lr, main=main)
        if main and settings.sample_every and step % settings.sample_every == 0:
            stage.write_samples(unwrapped, run_dir / "samples" / f"step-{step:07d}")
            write_loss_curve(run_dir / LOG_FILE, run_dir / LOSS_CURVE_FILE)
        last = step == settings.max_steps
        if settings.checkpoint_every and (step % settings.checkpoint_every == 0 or last):
            save_checkpoint(accelerator, run_dir, step, stage.export(unwrapped), keep_last=settings.keep_last)

    progress.close()
    if main:
        stage.export(accelerator.unwrap_model(training_model)).save_pretrained(run_dir / "model")
        write_loss_curve(run_dir / LOG_FILE, run_dir / LOSS_CURVE_FILE)
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return run_dir


def optimisation_step(stage: Stage, accelerator, training_model, optimizer, batches, step: int) -> dict[str, float]:
    """One optimiser step over `gradient_accumulation_steps` micro-batches; returns the mean of each loss."""
    accumulation, max_grad_norm = stage.train.gradient_accumulation_steps, stage.train.max_grad_norm
    means: dict[str, float] = {}
    for micro in range(accumulation):
        batch = next(batches)
        with accelerator.accumulate(training_model):
            losses = stage.losses(accelerator, training_model, batch, step * accumulation + micro)
            accelerator.backward(losses["loss"])
            if accelerator.sync_gradients and max_grad_norm:
                accelerator.clip_grad_norm_(training_model.parameters(), max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        for name, value in losses.items():
            # .item() waits for the device; once per micro-batch is cheap next to the backward pass
            means[name] = means.get(name, 0.0) + value.detach().float().item() / accumulation
    return means


def _run_dir(stage: Stage, checkpoint: Path | None) -> Path:
    """The output folder: the stage's output_dir, else the resumed run's folder, else a new dated one."""
    if stage.train.output_dir:
        return Path(stage.train.output_dir)
    if checkpoint is not None:
        return run_dir_of(checkpoint)
    from accelerate.utils import broadcast_object_list

    # one name for all processes (their clocks may cross a second boundary)
    return Path(broadcast_object_list([str(default_run_dir(stage.name, stage.config.name))])[0])
