"""The work behind the app: requests in, files out. `GenerationService` puts together the pieces, one job each:

- `lfdm.app.models.ModelRegistry`: the models on offer, loaded once and kept; each request gets the model's
  networks with a scheduler of its own, so the shared pipeline is never changed;
- `lfdm.app.runs`: one run at a time, progress per sampling step, the Stop button;
- `lfdm.app.folders.RequestFolders` and `lfdm.app.traces.TraceStore`: a folder per request (old ones deleted when
  the next request comes) and the step traces the inspector shows without re-running the model;
- the requests: `generate` and `compare` here, `animate` with `lfdm.app.animation`, the face preview with
  `lfdm.app.preview`, the time estimates with `lfdm.app.speed`.

It knows nothing about Gradio. It raises `UserInputError` (a `ValueError`) for every mistake a person can make, with
a message that says what to do, and `GenerationStopped` when a run was stopped; the UI turns both into `gr.Error`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lfdm.app import render
from lfdm.app.animation import AnimationResult, run_animation, write_animation
from lfdm.app.comparison import COMPARE_TILE, CompareResult, compare_framing
from lfdm.app.folders import RequestFolders
from lfdm.app.inputs import (
    DrivingSettings,
    GenerationSettings,
    UserInputError,
    check_driving_settings,
    check_settings,
    read_driving_video,
    read_photo,
    shown_scheduler,
)
from lfdm.app.models import ModelRegistry, find_pipelines
from lfdm.app.preview import FacePreview, image_size, preview_face, reduced, scaled_box
from lfdm.app.runs import GenerationStopped, ProgressFn, Runs, sample
from lfdm.app.speed import SpeedBook, Work, estimate_note
from lfdm.app.traces import StepView, TraceStore
from lfdm.framing import MAX_RESOLUTION
from lfdm.outputs import write_label_outputs
from lfdm.photo import output_size
from lfdm.viz import to_uint8

MEASURE_SIDE = 512  # pixels, the picture `measure_speed` renders


@dataclass(frozen=True)
class GenerationResult:
    """The files of one generated video (all in `folder`) and what the inspector needs to find its trace."""

    request_id: str
    folder: Path
    video: Path  # at the photo's size (upscaled to `display_size` when smaller)
    flow_video: Path  # colour wheel, with its key
    occlusion_video: Path
    panel_video: Path  # input | generated | warped input | flow | grid | occlusion
    downloads: list[Path]
    num_trace_steps: int
    face_box: tuple[int, int, int, int] | None = None  # in the photo's pixels; None: the whole picture
    face_note: str | None = None
    seconds: float = 0.0  # wall time of the pipeline call (sampling, decoding, rendering), without writing files
    note: str = ""  # Markdown: how long it took, where, with which sampler


class GenerationService:
    """Turns the page's requests into files.

    Args:
        models: shown name -> pipeline folder or Hub repo id, for the model selector.
        default_model: the name selected at start; None when there is no model.
        work_dir: where request folders go; default a new folder in the system's temp folder (Gradio serves files
            from there once a handler returns them, and from nowhere else on disk).
        max_age_s: request folders older than this are deleted.
        max_loaded: pipelines kept in memory at once (least recently used is dropped).
        display_size: side of the displayed videos, pixels.
        panel_size: tile side of the panel video, pixels.
        max_trace_steps: sampling steps kept for the inspector (evenly spaced, always the last one).
        device: "auto" (CUDA when available) or a torch device string.
        dtype: the networks' precision, "auto" (bfloat16 on a CPU with AMX-BF16, else float32), a name or a dtype.
        max_resolution: the longest side of a generated video; photos larger than this are scaled down.
        compare_resolution: the longest side of each video of the Compare grid.
        preview_size: the longest side of the face preview picture.
    """

    def __init__(
        self,
        models: Mapping[str, str],
        default_model: str | None = None,
        *,
        work_dir: str | Path | None = None,
        max_age_s: float = 3600.0,
        max_loaded: int = 2,
        display_size: int = 256,
        panel_size: int = 128,
        max_trace_steps: int = 100,
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        max_resolution: int = MAX_RESOLUTION,
        compare_resolution: int = 256,
        preview_size: int = 512,
    ):
        self.registry = ModelRegistry(models, default_model, max_loaded=max_loaded, device=device, dtype=dtype)
        self.folders = RequestFolders(work_dir, max_age_s=max_age_s)
        self.traces = TraceStore(self.folders)
        self.runs = Runs()
        self.speed = SpeedBook()  # this machine's measured speed, per model: for the estimates before a run
        self.display_size = display_size
        self.panel_size = panel_size
        self.max_trace_steps = max_trace_steps
        self.max_resolution = max_resolution
        self.compare_resolution = compare_resolution
        self.preview_size = preview_size

    @classmethod
    def from_checkpoints(cls, root: str | Path, model: str | None = None, **kwargs) -> GenerationService:
        """Offer every pipeline folder under `root`, plus `model` (a folder or Hub repo id) selected first."""
        models = find_pipelines(root)
        if model is not None:
            name = next((name for name, path in models.items() if Path(path).resolve() == Path(model).resolve()), None)
            if name is None:
                name = str(model)
                models = {name: str(model), **models}
            return cls(models, name, **kwargs)
        return cls(models, **kwargs)

    # --- the models (`ModelRegistry`) -----------------------------------------------------------------------------

    @property
    def models(self) -> dict[str, str]:
        return self.registry.models

    @property
    def default_model(self) -> str | None:
        return self.registry.default_model

    @property
    def has_model(self) -> bool:
        return self.registry.has_model

    @property
    def work_dir(self) -> Path:
        return self.folders.root

    def pipeline(self, model: str | None = None):
        """The loaded pipeline of `model` (default: the default model), shared by every request; never changed."""
        return self.registry.pipeline(model)

    def labels(self, model: str | None = None) -> list[str]:
        return self.registry.labels(model)

    def default_label(self, model: str | None = None) -> str | None:
        return self.registry.default_label(model)

    def describe(self, model: str | None = None) -> str:
        return self.registry.describe(model)

    def default_sampler(self, model: str | None = None) -> tuple[str, int]:
        return self.registry.default_sampler(model)

    def default_steps(self, model: str | None, scheduler: str) -> int:
        return self.registry.default_steps(model, scheduler)

    def quality_presets(self, model: str | None = None) -> dict[str, tuple[str, int]]:
        return self.registry.quality_presets(model)

    def preload(self, measure: bool = True) -> None:
        """Load the default model now, so the first request does not wait for it, and (`measure`) time one short
        run, so that the first long request gets an estimate of its time."""
        if self.has_model:
            self.pipeline()
            if measure:
                self.measure_speed()

    def measure_speed(self, model: str | None = None) -> None:
        """Measure this machine's speed afresh: after a warm-up, two 1-step runs of the model on a plain picture (a
        few seconds on a CPU), one at the model's own size (sampling and decoding), one rendered at `MEASURE_SIDE`
        px (the photo-size rendering on top)."""
        name = self.registry.name(model)
        picture = np.full((MEASURE_SIDE, MEASURE_SIDE, 3), 128, np.uint8)
        settings = self.check_settings(
            GenerationSettings(label=self.default_label(name), model=name, steps=1, find_face=False)
        )
        run = lambda resolution: self._sample(
            picture, [settings.label], settings, threading.Event(), None, trace=False, resolution=resolution
        )
        run(None)  # the first call warms up (kernels, allocations): its time is not this machine's speed
        self.speed.forget(name)
        run(None)  # sampling and decoding at the model's size
        run("input")  # and rendering at MEASURE_SIDE px

    def check_settings(self, settings: GenerationSettings, *, need_label: bool = True) -> GenerationSettings:
        """The settings checked against the selected model (UserInputError), with the model's name filled in."""
        name = self.registry.name(settings.model)
        scheduler = settings.scheduler or self.default_sampler(name)[0]
        return check_settings(
            replace(settings, model=name, scheduler=scheduler),
            self.labels(name) if need_label else None,
            default_steps=lambda key: self.default_steps(name, key),
        )

    # --- the requests ---------------------------------------------------------------------------------------------

    def generate(
        self,
        image_path,
        settings: GenerationSettings,
        *,
        session: str | None = None,
        progress: ProgressFn | None = None,
    ) -> GenerationResult:
        """One video for one label, with every picture and download; keeps the step trace for `inspect`."""
        self.cleanup()
        settings = self.check_settings(settings)
        photo = read_photo(image_path)
        fitted, scale = reduced(photo, self.max_resolution)  # the video is at most this large anyway
        with self.runs.stoppable(session) as stop:
            output, seconds = self._sample(
                fitted, [settings.label], settings, stop, progress, trace=True, resolution="input"
            )

        request_id, folder = self.folders.new()
        writing_began = time.perf_counter()
        label_outputs = (
            settings.label,
            output.model_input,
            output.frames[0],
            output.warped[0],
            output.flows[0],
            output.occlusions[0],
        )
        with ThreadPoolExecutor(1) as pool:  # the download files and the display files are encoded side by side
            written = pool.submit(
                write_label_outputs, folder, *label_outputs, fps=settings.fps, gif=True, panel_size=self.panel_size,
                model_frames=output.model_frames[0],
            )  # fmt: skip
            displays = render.write_display_videos(folder, output, fps=settings.fps, size=self.display_size)
            trace = render.StepTrace.from_output(output, max_steps=self.max_trace_steps)
            trace_file = self.traces.keep(request_id, trace)
            downloads = written.result()
        megapixels = output.frames.shape[2] * output.frames.shape[3] / 1e6
        self.speed.add_writing(settings.model, time.perf_counter() - writing_began, output.frames.shape[1] * megapixels)
        panel_video = next(path for path in downloads if path.name == "panels.mp4")
        where = "GPU" if self.pipeline(settings.model).device.type == "cuda" else "CPU"
        sampler = f"{shown_scheduler(settings.scheduler)}, {settings.steps} steps"
        return GenerationResult(
            request_id=request_id,
            folder=folder,
            video=displays.video,
            flow_video=displays.flow_video,
            occlusion_video=displays.occlusion_video,
            panel_video=panel_video,
            downloads=[*downloads, trace_file],
            num_trace_steps=len(trace.steps),
            face_box=scaled_box(output.face_box, 1 / scale, photo.shape),
            face_note=output.face_note,
            seconds=seconds,
            note=f"Made in {seconds:.2f} s on the {where} ({sampler}).",
        )

    def compare(
        self,
        image_path,
        settings: GenerationSettings,
        *,
        session: str | None = None,
        progress: ProgressFn | None = None,
        batch_size: int = 8,
    ) -> CompareResult:
        """Every label of the model for one image, sampled in batches, shown as one captioned grid video."""
        self.cleanup()
        began = time.perf_counter()
        settings = self.check_settings(settings, need_label=False)
        pipe = self.pipeline(settings.model)
        photo, _ = reduced(read_photo(image_path), self.max_resolution)
        labels = pipe.labels
        resolution, region = compare_framing(
            photo,
            pipe,
            settings.find_face,
            compare_resolution=self.compare_resolution,
            max_resolution=self.max_resolution,
        )
        videos: dict[str, np.ndarray] = {}
        with self.runs.stoppable(session) as stop:
            for start in range(0, len(labels), batch_size):
                batch = labels[start : start + batch_size]
                share, done = len(batch) / len(labels), start / len(labels)
                batch_progress = None if progress is None else (lambda f, d, s=share, o=done: progress(o + f * s, d))
                output, _ = self._sample(
                    photo, batch, settings, stop, batch_progress, trace=False, resolution=resolution
                )
                for label, frames in zip(batch, output.frames, strict=True):
                    frames = to_uint8(frames)
                    if region is not None:
                        frames = render.crop_frames(frames, region, photo.shape[:2])
                    videos[label] = frames
        video, gif = render.write_comparison(self.folders.new()[1], videos, fps=settings.fps, size=COMPARE_TILE)
        # Batched sampling costs a Compare run less per action than a generation: it keeps its own speed.
        work = Work.of(pipe, settings.steps, settings.num_frames, len(labels), None)
        self.speed.add_compare(settings.model, time.perf_counter() - began, work)
        return CompareResult(video=video, downloads=[video, gif])

    def animate(
        self,
        image_path,
        video_path,
        settings: DrivingSettings,
        *,
        session: str | None = None,
        progress: ProgressFn | None = None,
    ) -> AnimationResult:
        """The picture moved like the driving video (`LFDMPipeline.animate`), with the same views and downloads as a
        generated video. A face model finds the picture's face (`settings.find_face`) and the driving face in every
        frame (`settings.driving_face`); `note` says where the driving face was found and when a long driving video
        was cut. `stop(session)` stops the run between chunks of decoded frames (GenerationStopped)."""
        self.cleanup()
        settings = check_driving_settings(replace(settings, model=self.registry.name(settings.model)))
        pipe = self.registry.request_pipeline(settings.model)  # its own `interrupt` flag
        photo, _ = reduced(read_photo(image_path), self.max_resolution)
        driving = read_driving_video(video_path, pipe.image_size)
        with self.runs.stoppable(session) as stop, self.runs.turn(stop):
            output = run_animation(pipe, photo, driving, settings, stop, progress, max_resolution=self.max_resolution)
        _, folder = self.folders.new()
        return write_animation(
            folder, output, driving, settings, panel_size=self.panel_size, display_size=self.display_size
        )

    def _sample(self, image, labels, settings, stop: threading.Event, progress, *, trace: bool, resolution):
        """One pipeline call for checked `settings` on the request's own pipeline (`ModelRegistry.request_pipeline`:
        the loaded one with the request's scheduler), in its turn, timed into `speed`. Returns the output and the
        seconds the call took (not the wait for its turn); GenerationStopped when `stop` was set."""
        pipe = self.registry.request_pipeline(settings.model, settings.scheduler)
        with self.runs.turn(stop):
            run = sample(
                pipe, image, labels, settings, stop, progress, trace=trace, resolution=resolution,
                max_resolution=self.max_resolution,
            )  # fmt: skip
        if run.output.interrupted or stop.is_set():
            raise GenerationStopped("stopped; press Generate to start again.")
        if run.sampling_seconds is not None:
            rendered = None if resolution is None else run.output.frames.shape[2:4]  # None: the model's own frames
            work = Work.of(pipe, settings.steps, settings.num_frames, len(labels), rendered)
            self.speed.add_run(settings.model, run.sampling_seconds, run.seconds - run.sampling_seconds, work)
        if progress is not None:
            progress(1.0, "writing the videos")
        return run.output, run.seconds

    def find_face(self, image_path, find_face: bool = True, model: str | None = None) -> FacePreview:
        """The face the next generation will animate, drawn on the input, and the size of the video (no sampling;
        `lfdm.app.preview.preview_face`)."""
        pipe = self.pipeline(model) if self.has_model else None
        return preview_face(
            read_photo(image_path), pipe, find_face, max_resolution=self.max_resolution, preview_size=self.preview_size
        )

    # --- how long a run takes -------------------------------------------------------------------------------------

    def estimate_seconds(
        self, image_path, settings: GenerationSettings, num_labels: int = 1, *, compare: bool = False
    ) -> float | None:
        """How long a generation with these settings takes on this machine, from the speed measured by earlier
        runs (`measure_speed` at start, then every run); None before any run or for settings it cannot check.
        `compare`: a Compare run of `num_labels` actions, rendered smaller and without a generation's files."""
        try:
            settings = self.check_settings(settings, need_label=False)
        except UserInputError:
            return None
        pipe = self.pipeline(settings.model)
        size = image_size(image_path) or (pipe.image_size, pipe.image_size)
        # Compare renders the face's region at about COMPARE_TILE px: taken as `compare_resolution`
        long_side = min(self.compare_resolution, max(size)) if compare else "input"
        video_size = output_size(*size, long_side, self.max_resolution)
        work = Work.of(pipe, settings.steps, settings.num_frames, num_labels, video_size)
        return self.speed.estimate(settings.model, work, compare=compare)

    def estimate_note(
        self, image_path, settings: GenerationSettings, num_labels: int = 1, *, compare: bool = False
    ) -> str:
        """Markdown for the page before a run: "This takes about 40 s on this machine." when it takes longer than
        `lfdm.app.speed.SHOWN_ABOVE_S`, else ""."""
        return estimate_note(self.estimate_seconds(image_path, settings, num_labels, compare=compare))

    # --- stopping, the inspector, housekeeping ---------------------------------------------------------------------

    @property
    def active_runs(self) -> int:
        """Runs started and not finished yet (sampling, or waiting for the one running)."""
        return self.runs.active

    def stop(self, session: str | None) -> bool:
        """Stop the run of `session` after its current step. True when one was running or waiting."""
        return self.runs.stop(session)

    def inspect(self, request_id: str | None, step: int, *, videos: bool = False, fps: float = 8.0) -> StepView:
        """The predicted flows and occlusion maps at one traced step (1 = first), on the trace's one colour scale."""
        return self.traces.view(request_id, step, videos=videos, fps=fps, size=self.display_size)

    def cleanup(self) -> None:
        """Delete request folders older than `max_age_s` (and forget their traces)."""
        for request_id in self.folders.clean_up():
            self.traces.forget(request_id)
