"""How one run goes: it waits for its turn, reports progress per sampling step, and stops when asked.

`Runs` holds a stop flag per browser session (the Stop button sets it) and the turn: one pipeline call at a time,
because runs share the machine's cores and each run's time is measured alone (`lfdm.app.speed`). `sample` makes
one pipeline call for a request, on the request's own pipeline (`ModelRegistry.request_pipeline`), so a stop sets
that request's `interrupt` flag and nobody else's.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from lfdm.app.inputs import GenerationSettings
from lfdm.pipeline import LFDMPipeline, LFDMPipelineOutput

ProgressFn = Callable[[float, str], None]


class GenerationStopped(RuntimeError):
    """The person pressed Stop."""


class Runs:
    """The runs started and not finished: a stop flag for each, and the one turn at the pipeline."""

    def __init__(self):
        self._stop_events: dict[str, threading.Event] = {}
        self._turn = threading.Lock()

    @contextmanager
    def stoppable(self, session: str | None) -> Iterator[threading.Event]:
        """A stop flag for this run, set by `stop(session)` (the Stop button of the same browser session)."""
        stop = threading.Event()
        key = session or uuid.uuid4().hex
        self._stop_events[key] = stop
        try:
            yield stop
        finally:
            if self._stop_events.get(key) is stop:
                del self._stop_events[key]

    @contextmanager
    def turn(self, stop: threading.Event) -> Iterator[None]:
        """Wait for the run before to end; GenerationStopped when Stop was pressed while waiting."""
        with self._turn:
            if stop.is_set():
                raise GenerationStopped("stopped before it started.")
            yield

    def stop(self, session: str | None) -> bool:
        """Stop the run of `session` after its current step. True when one was running or waiting."""
        event = self._stop_events.get(session) if session else None
        if event is None:
            return False
        event.set()
        return True

    @property
    def active(self) -> int:
        """Runs started and not finished yet (sampling, or waiting for their turn)."""
        return len(self._stop_events)


@dataclass(frozen=True)
class TimedOutput:
    """A pipeline output and how long its call took, in seconds."""

    output: LFDMPipelineOutput
    seconds: float  # the whole call: sampling, decoding, rendering
    sampling_seconds: float | None  # up to the end of the last sampling step; None when sampling did not end


def sample(
    pipe: LFDMPipeline,
    image,
    labels: list[str],
    settings: GenerationSettings,
    stop: threading.Event,
    progress: ProgressFn | None,
    *,
    trace: bool,
    resolution,
    max_resolution: int,
) -> TimedOutput:
    """One call of `pipe` (the request's own, with its scheduler) for checked `settings`: progress after every
    sampling step (the count is the pipeline's: `LFDMPipeline.num_sampling_steps`), then one unit for decoding;
    `stop` interrupts after the current step. The video comes back at `resolution` ("input": the photo's size)."""
    sampling_steps = pipe.num_sampling_steps(settings.num_frames, settings.steps)
    total = sampling_steps + 1  # the last unit is decoding the frames
    sampled_at = []  # when the last sampling step ended: sampling and rendering are timed apart

    def on_step_end(pipe, step_index, timestep, callback_kwargs):
        done = step_index + 1
        if done == sampling_steps:
            sampled_at.append(time.perf_counter())
        if progress is not None:
            what = "decoding the frames" if done == sampling_steps else f"sampling step {done} of {sampling_steps}"
            progress(done / total, what)
        if stop.is_set():
            pipe.interrupt = True  # the loop ends after this step, so the CPU stops working
        return {}

    began = time.perf_counter()
    output = pipe(
        image,
        labels,
        num_inference_steps=settings.steps,
        guidance_scale=settings.guidance_scale,
        generator=[torch.Generator().manual_seed(settings.seed) for _ in labels],
        callback_on_step_end=on_step_end,
        return_step_trace=trace,
        num_frames=settings.num_frames,
        motion_scale=settings.motion_scale,
        face="auto" if settings.find_face else "none",
        resolution=resolution,
        max_resolution=max_resolution,
    )
    seconds = time.perf_counter() - began
    return TimedOutput(output, seconds, sampled_at[-1] - began if sampled_at else None)
