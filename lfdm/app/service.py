"""The work behind the app: load pipelines once, check inputs, sample with progress and stop, write the files.

`GenerationService` knows nothing about Gradio. It raises `UserInputError` (a `ValueError`) for every mistake a
person can make, with a message that says what to do, and `GenerationStopped` when a run was stopped; the UI turns
both into `gr.Error`. Every request writes into its own folder under one temporary folder, and folders older than
`max_age_s` are deleted when the next request comes.

The step inspector never re-runs the model: each run keeps its step trace (the predicted clean flows and occlusion
maps of every sampling step, at most `max_trace_steps` of them) in memory and in `trace.npz` of its folder, and
`inspect` renders one step of it.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from lfdm.app import render
from lfdm.app.inputs import (
    SCHEDULERS,
    DrivingSettings,
    GenerationSettings,
    UserInputError,
    check_driving_settings,
    check_settings,
    quality_presets,
    read_driving_video,
    read_photo,
    shown_scheduler,
)
from lfdm.app.models import NO_MODEL_MESSAGE, find_pipelines, read_model_card
from lfdm.app.speed import SpeedBook, Work, estimate_note
from lfdm.driving import DRIVING_LABEL
from lfdm.flow_edits import num_clips
from lfdm.framing import MAX_RESOLUTION, SYNTHFACE_FRAMING
from lfdm.outputs import write_label_outputs
from lfdm.photo import frame_photo, output_size
from lfdm.pipeline import load_pipeline
from lfdm.runtime import cpu_has_amx_bf16, dtype_name
from lfdm.schedulers import default_steps, make_scheduler, sampler_name
from lfdm.viz import to_uint8

logger = logging.getLogger(__name__)

STRIP_TILE = 64  # pixels per frame in the inspector's strips (latent cells drawn as blocks)
COMPARE_TILE = 160  # pixels, the height of each action's face in the Compare grid: enough to tell expressions apart
COMPARE_CONTEXT = 1.6  # the Compare crop's side, in face-box sides: brows, chin and a little around them
MEASURE_SIDE = 512  # pixels, the picture `measure_speed` renders
# The label encoder config's key for the action the app selects first: one that visibly works (the model card says
# which). Models without it start on `FALLBACK_LABEL` when they know it, else on their first label.
DEFAULT_LABEL_KEY = "_lfdm_default_label"
FALLBACK_LABEL = "surprise"
_REQUEST_ID = re.compile(r"^[0-9a-f]{32}$")

ProgressFn = Callable[[float, str], None]


def _precision(pipe) -> str:
    """Where the networks run and in which precision, and why (Markdown)."""
    device, dtype = pipe.device, pipe.unet.dtype
    where = f"Runs on the {'GPU' if device.type == 'cuda' else 'CPU'} in **{dtype_name(dtype)}**"
    if device.type == "cpu" and dtype == torch.bfloat16 and cpu_has_amx_bf16():
        return where + " (this CPU has AMX-BF16, where bfloat16 is 2-3x faster than float32)."
    return where + "."


def _timing_note(pipe, settings: GenerationSettings, seconds: float) -> str:
    """Markdown for the page: "Made in 0.42 s on the CPU (DPM-Solver++, 4 steps)."."""
    where = "GPU" if pipe.device.type == "cuda" else "CPU"
    return f"Made in {seconds:.2f} s on the {where} ({shown_scheduler(settings.scheduler)}, {settings.steps} steps)."


class GenerationStopped(RuntimeError):
    """The person pressed Stop."""


@dataclass(frozen=True)
class FacePreview:
    """The input with the face found drawn on it, and what the person should know about the face search."""

    picture: np.ndarray  # uint8 (H, W, 3), long side at most `GenerationService.preview_size`
    note: str  # Markdown
    face_box: tuple[int, int, int, int] | None  # in the photo's pixels
    video_size: tuple[int, int] | None = None  # (width, height) of the video a generation will make


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


@dataclass(frozen=True)
class AnimationResult:
    """The files of one picture animated by a driving video; `note` is one line for the page."""

    video: Path
    flow_video: Path
    occlusion_video: Path
    panel_video: Path
    downloads: list[Path]
    note: str


@dataclass(frozen=True)
class CompareResult:
    video: Path  # every label's video in one captioned grid
    downloads: list[Path]


@dataclass(frozen=True)
class StepView:
    """One sampling step of a trace: frame strips (uint8 (H, W, 3)) and, when asked, videos."""

    caption: str
    flow_strip: np.ndarray
    occlusion_strip: np.ndarray
    flow_video: Path | None = None
    occlusion_video: Path | None = None


class GenerationService:
    """Holds the loaded pipelines and turns requests into files.

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
        self.models = dict(models)
        self.default_model = default_model if default_model in self.models else next(iter(self.models), None)
        if work_dir is None:
            self.work_dir = Path(tempfile.mkdtemp(prefix="lfdm-app-"))
            weakref.finalize(self, shutil.rmtree, self.work_dir, ignore_errors=True)  # also runs when the app exits
        else:
            self.work_dir = Path(work_dir)
            self.work_dir.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.max_loaded = max_loaded
        self.display_size = display_size
        self.panel_size = panel_size
        self.max_trace_steps = max_trace_steps
        self.device = device
        self.dtype = dtype
        self.max_resolution = max_resolution
        self.compare_resolution = compare_resolution
        self.preview_size = preview_size
        self._pipelines: OrderedDict[str, object] = OrderedDict()
        self._schedulers: dict[str, object] = {}  # each model's own scheduler, as loaded (runs swap the pipeline's)
        self._traces: OrderedDict[str, render.StepTrace] = OrderedDict()
        self._load_lock = threading.Lock()
        self._trace_lock = threading.Lock()  # the inspector's events run beside generations
        self._run_lock = threading.Lock()  # one pipeline call at a time: runs share the pipeline's scheduler
        self._stop_events: dict[str, threading.Event] = {}
        self.speed = SpeedBook()  # this machine's measured speed, per model: for the estimates before a run

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

    # --- models ---------------------------------------------------------------------------------------------------

    @property
    def has_model(self) -> bool:
        return self.default_model is not None

    def pipeline(self, model: str | None = None):
        """The loaded pipeline of `model` (default: the default model); loaded once and kept."""
        name = self._model_name(model)
        with self._load_lock:
            if name not in self._pipelines:
                logger.info("loading model %r from %s", name, self.models[name])
                try:
                    pipe = load_pipeline(self.models[name], device=self.device, dtype=self.dtype)
                except (OSError, ValueError) as error:  # a broken folder, an unknown repo, no network
                    raise UserInputError(f"could not load the model {name!r}: {error}") from error
                pipe.set_progress_bar_config(disable=True)
                self._schedulers[name] = pipe.scheduler
                self._pipelines[name] = pipe
                while len(self._pipelines) > self.max_loaded:
                    dropped, _ = self._pipelines.popitem(last=False)
                    logger.info("unloaded model %r", dropped)
            self._pipelines.move_to_end(name)
            return self._pipelines[name]

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
        name = self._model_name(model)
        pipe = self.pipeline(name)
        picture = np.full((MEASURE_SIDE, MEASURE_SIDE, 3), 128, np.uint8)
        settings = self.check_settings(
            GenerationSettings(label=self.default_label(name), model=name, steps=1, find_face=False)
        )
        run = lambda resolution: self._sample(
            pipe, picture, [settings.label], settings, threading.Event(), None, trace=False, resolution=resolution
        )
        run(None)  # the first call warms up (kernels, allocations): its time is not this machine's speed
        self.speed.forget(name)
        run(None)  # sampling and decoding at the model's size
        run("input")  # and rendering at MEASURE_SIDE px

    def default_label(self, model: str | None = None) -> str | None:
        """The action selected first: the model's own choice (`DEFAULT_LABEL_KEY` in its label encoder config),
        else `FALLBACK_LABEL` when the model knows it, else its first label."""
        if not self.has_model:
            return None
        pipe = self.pipeline(model)
        labels = pipe.labels
        chosen = pipe.label_encoder.config.get(DEFAULT_LABEL_KEY)
        for label in (chosen, FALLBACK_LABEL):
            if label in labels:
                return label
        return labels[0] if labels else None

    def labels(self, model: str | None = None) -> list[str]:
        """The actions the model knows, from its own config (never a list of ours)."""
        if not self.has_model:
            return []
        return self.pipeline(model).labels

    def describe(self, model: str | None = None) -> str:
        """Markdown: what the selected model is (size, frames, labels, and its model card's summary if any)."""
        if not self.has_model:
            return NO_MODEL_MESSAGE
        name = self._model_name(model)
        pipe = self.pipeline(name)
        text = (
            f"**Model** `{name}`: {pipe.image_size}x{pipe.image_size} pixels, {pipe.num_frames} frames, "
            f"{len(pipe.labels)} actions ({', '.join(pipe.labels)}). {_precision(pipe)}"
        )
        card = read_model_card(self.models[name])
        return f"{text}\n\n{card}" if card else text

    def default_sampler(self, model: str | None = None) -> tuple[str, int]:
        """The model's own sampler (its shown name in `SCHEDULERS`) and the steps it samples by default."""
        name = self._model_name(model)
        self.pipeline(name)
        own = self._schedulers[name]
        return shown_scheduler(sampler_name(own)), self.default_steps(name, shown_scheduler(sampler_name(own)))

    def default_steps(self, model: str | None, scheduler: str) -> int:
        """The steps `scheduler` (a shown name or `make_scheduler` name) samples on this model by default: the
        model's measured count for it, else the sampler's usual count (`lfdm.schedulers.default_steps`)."""
        name = self._model_name(model)
        self.pipeline(name)
        key = SCHEDULERS.get(scheduler, scheduler)
        return default_steps(make_scheduler(key, base_config=self._schedulers[name].config))

    def quality_presets(self, model: str | None = None) -> dict[str, tuple[str, int]]:
        """The Quality choices for the model: its measured default, 25 steps, the paper's DDPM 1000."""
        return quality_presets(*self.default_sampler(model))

    def _model_name(self, model: str | None) -> str:
        if not self.has_model:
            raise UserInputError(NO_MODEL_MESSAGE)
        name = model or self.default_model
        if name not in self.models:
            raise UserInputError(f"unknown model {name!r}; choose one of: {', '.join(self.models)}.")
        return name

    # --- checking inputs ------------------------------------------------------------------------------------------

    def check_settings(self, settings: GenerationSettings, *, need_label: bool = True) -> GenerationSettings:
        """The settings checked against the selected model (UserInputError), with the model's name filled in."""
        name = self._model_name(settings.model)
        scheduler = settings.scheduler or self.default_sampler(name)[0]
        return check_settings(
            replace(settings, model=name, scheduler=scheduler),
            self.labels(name) if need_label else None,
            default_steps=lambda key: self.default_steps(name, key),
        )

    # --- running --------------------------------------------------------------------------------------------------

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
        pipe = self.pipeline(settings.model)
        photo = read_photo(image_path)
        fitted, scale = _reduced(photo, self.max_resolution)  # the video is at most this large anyway
        with self._stoppable(session) as stop:
            output, seconds = self._sample(
                pipe, fitted, [settings.label], settings, stop, progress, trace=True, resolution="input"
            )

        request_id = uuid.uuid4().hex
        folder = self.work_dir / request_id
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
            trace.save(folder / "trace.npz")
            downloads = written.result()
        self._remember(request_id, trace)
        megapixels = output.frames.shape[2] * output.frames.shape[3] / 1e6
        self.speed.add_writing(settings.model, time.perf_counter() - writing_began, output.frames.shape[1] * megapixels)
        panel_video = next(path for path in downloads if path.name == "panels.mp4")
        return GenerationResult(
            request_id=request_id,
            folder=folder,
            video=displays.video,
            flow_video=displays.flow_video,
            occlusion_video=displays.occlusion_video,
            panel_video=panel_video,
            downloads=[*downloads, folder / "trace.npz"],
            num_trace_steps=len(trace.steps),
            face_box=_scaled_box(output.face_box, 1 / scale, photo.shape),
            face_note=output.face_note,
            seconds=seconds,
            note=_timing_note(pipe, settings, seconds),
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
        photo, _ = _reduced(read_photo(image_path), self.max_resolution)
        labels = pipe.labels
        # Each action's tile shows the face large enough to judge: the photo is rendered so that the region around
        # the face is about `COMPARE_TILE` px, then cropped to it; without a face, the whole picture.
        face_box = None
        if settings.find_face and pipe.framing.is_face:
            face_box = frame_photo(photo, pipe.image_size, model_framing=pipe.framing, face="auto").face_box
        resolution, region = self.compare_resolution, None
        if face_box is not None:
            region = _face_region(face_box, photo.shape[:2])
            side = region[2] - region[0]
            wanted = math.ceil(max(photo.shape[:2]) * COMPARE_TILE / side)  # the region then is COMPARE_TILE px
            resolution = int(min(self.max_resolution, max(self.compare_resolution, wanted)))
        videos: dict[str, np.ndarray] = {}
        with self._stoppable(session) as stop:
            for start in range(0, len(labels), batch_size):
                batch = labels[start : start + batch_size]
                share, done = len(batch) / len(labels), start / len(labels)
                batch_progress = None if progress is None else (lambda f, d, s=share, o=done: progress(o + f * s, d))
                output, _ = self._sample(
                    pipe, photo, batch, settings, stop, batch_progress, trace=False, resolution=resolution
                )
                for label, frames in zip(batch, output.frames, strict=True):
                    frames = to_uint8(frames)
                    if region is not None:
                        frames = render.crop_frames(frames, region, photo.shape[:2])
                    videos[label] = frames
        video, gif = render.write_comparison(
            self.work_dir / uuid.uuid4().hex, videos, fps=settings.fps, size=COMPARE_TILE
        )
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
        settings = check_driving_settings(replace(settings, model=self._model_name(settings.model)))
        pipe = self.pipeline(settings.model)
        photo, _ = _reduced(read_photo(image_path), self.max_resolution)
        driving = read_driving_video(video_path, pipe.image_size)
        with self._stoppable(session) as stop, self._run_lock:
            if stop.is_set():
                raise GenerationStopped("stopped before it started.")

            def on_chunk_end(pipe, done, total):
                if progress is not None:
                    progress(done / total, f"decoded {done} of {total} frames")
                if stop.is_set():
                    pipe.interrupt = True  # decoding ends after this chunk

            try:
                output = pipe.animate(
                    photo,
                    driving,
                    relative=settings.relative,
                    motion_scale=settings.motion_scale,
                    face="auto" if settings.find_face else "none",
                    driving_face="auto" if settings.driving_face else "none",
                    resolution="input",
                    max_resolution=self.max_resolution,
                    callback_on_chunk_end=on_chunk_end,
                )
            except ValueError as error:
                if "no face was found" not in str(error):
                    raise
                raise UserInputError(_no_driving_face(str(error))) from None
        if output.interrupted or stop.is_set():
            raise GenerationStopped("stopped; press Animate to start again.")
        if progress is not None:
            progress(1.0, "writing the videos")
        fps = settings.fps or driving.fps or 8.0
        folder = self.work_dir / uuid.uuid4().hex
        outputs = (output.model_input, output.frames[0], output.warped[0], output.flows[0], output.occlusions[0])
        with ThreadPoolExecutor(1) as pool:  # the download files and the display files are encoded side by side
            written = pool.submit(
                write_label_outputs, folder, DRIVING_LABEL, *outputs, fps=fps, gif=True, panel_size=self.panel_size,
                model_frames=output.model_frames[0],
            )  # fmt: skip
            displays = render.write_display_videos(folder, output, fps=fps, size=self.display_size)
            downloads = written.result()
        used = len(driving.frames)
        note = f"Animated {used} frames at {fps:g} frames per second."
        if driving.truncated:
            note = f"The driving video has {driving.total_frames} frames; animated the first {used} at {fps:g} fps."
        if output.driving_note:
            note = f"{note} {output.driving_note}"
        return AnimationResult(
            video=displays.video,
            flow_video=displays.flow_video,
            occlusion_video=displays.occlusion_video,
            panel_video=next(path for path in downloads if path.name == "panels.mp4"),
            downloads=downloads,
            note=note,
        )

    @contextmanager
    def _stoppable(self, session: str | None):
        """A stop flag for this run, set by `stop(session)` (the Stop button of the same browser session)."""
        stop = threading.Event()
        key = session or uuid.uuid4().hex
        self._stop_events[key] = stop
        try:
            yield stop
        finally:
            if self._stop_events.get(key) is stop:
                del self._stop_events[key]

    def _sample(self, pipe, image, labels, settings, stop: threading.Event, progress, *, trace: bool, resolution):
        """Run the pipeline under the run lock; progress per sampling step; `stop` interrupts after a step. The
        video comes back at `resolution` ("input": the photo's size), at most `max_resolution`. Returns the output
        and the seconds the pipeline call took (not the wait for the lock)."""
        with self._run_lock:
            if stop.is_set():
                raise GenerationStopped("stopped before it started.")
            pipe.scheduler = make_scheduler(settings.scheduler, base_config=self._schedulers[settings.model].config)
            # a video longer than the model's clip samples one clip after the other, each for all labels at once
            sampling_steps = settings.steps * num_clips(settings.num_frames or pipe.num_frames, pipe.num_frames)
            total = sampling_steps + 1  # the last unit is decoding the frames
            sampled_at = []  # when the last sampling step ended: sampling and rendering are timed apart

            def on_step_end(pipe, step_index, timestep, callback_kwargs):
                if step_index + 1 == sampling_steps:
                    sampled_at.append(time.perf_counter())
                if progress is not None:
                    done = step_index + 1
                    what = (
                        "decoding the frames" if done == sampling_steps else f"sampling step {done} of {sampling_steps}"
                    )
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
                max_resolution=self.max_resolution,
            )
            seconds = time.perf_counter() - began
        if output.interrupted or stop.is_set():
            raise GenerationStopped("stopped; press Generate to start again.")
        if sampled_at:
            rendered = None if resolution is None else output.frames.shape[2:4]  # None: the model's own frames
            work = Work.of(pipe, settings.steps, settings.num_frames, len(labels), rendered)
            self.speed.add_run(settings.model, sampled_at[-1] - began, time.perf_counter() - sampled_at[-1], work)
        if progress is not None:
            progress(1.0, "writing the videos")
        return output, seconds

    def find_face(self, image_path, find_face: bool = True, model: str | None = None) -> FacePreview:
        """The face the next generation will animate, drawn on the input, and the size of the video (no sampling;
        well under a second even for a 6000x6000 photo: the face is searched on a copy at most `max_resolution`
        px, the size a generation uses too)."""
        photo = read_photo(image_path)
        height, width = photo.shape[:2]
        small, scale = _reduced(photo, self.max_resolution)
        pipe = self.pipeline(model) if self.has_model else None
        size, model_framing = (pipe.image_size, pipe.framing) if pipe is not None else (64, SYNTHFACE_FRAMING)
        framing = frame_photo(small, size, model_framing=model_framing, face="auto" if find_face else "none")
        picture = render.face_preview(small, framing.face_box, self.preview_size)
        face_box = _scaled_box(framing.face_box, 1 / scale, photo.shape)
        if not model_framing.is_face:
            note = "The whole picture is animated: this model was trained on whole pictures, not faces."
        elif not find_face:
            note = "The whole picture is animated (*Find the face* is off)."
        elif face_box is None:
            note = f"**{framing.note}**"
        else:
            x0, y0, x1, y1 = face_box
            how = "animated and pasted back" if framing.aligned else "framed like the model's training faces already"
            note = f"Face found ({x1 - x0}x{y1 - y0} px), {how}." + (f" **{framing.note}**" if framing.note else "")
        video_height, video_width = output_size(height, width, "input", self.max_resolution)
        if scale < 1:
            note += (
                f" The photo is {width}x{height} px; the video will be {video_width}x{video_height} px "
                f"(at most {self.max_resolution} px a side)."
            )
        return FacePreview(picture=picture, note=note, face_box=face_box, video_size=(video_width, video_height))

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
        size = _image_size(image_path) or (pipe.image_size, pipe.image_size)
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

    @property
    def active_runs(self) -> int:
        """Runs started and not finished yet (sampling, or waiting for the one running)."""
        return len(self._stop_events)

    def stop(self, session: str | None) -> bool:
        """Stop the run of `session` after its current step. True when one was running or waiting."""
        event = self._stop_events.get(session) if session else None
        if event is None:
            return False
        event.set()
        return True

    # --- the step inspector ---------------------------------------------------------------------------------------

    def inspect(self, request_id: str | None, step: int, *, videos: bool = False, fps: float = 8.0) -> StepView:
        """The predicted flows and occlusion maps at one traced step (1 = first), on the trace's one colour scale."""
        trace = self._trace(request_id)
        index = int(min(max(round(float(step)), 1), len(trace.steps))) - 1
        pictures = render.render_step(trace, index, tile=STRIP_TILE)
        view = StepView(pictures.caption, pictures.flow_strip, pictures.occlusion_strip)
        if videos:
            folder = self.work_dir / request_id
            flow_video, occlusion_video = render.write_step_videos(
                folder, trace, index, fps=fps, size=self.display_size
            )
            view = replace(view, flow_video=flow_video, occlusion_video=occlusion_video)
        return view

    def _remember(self, request_id: str, trace: render.StepTrace) -> None:
        with self._trace_lock:
            self._traces[request_id] = trace
            while len(self._traces) > 8:  # a few recent traces in memory; the others are read back from disk
                self._traces.popitem(last=False)

    def _trace(self, request_id: str | None) -> render.StepTrace:
        if not request_id or not _REQUEST_ID.match(str(request_id)):
            raise UserInputError("generate a video first; the inspector shows the steps of the last one.")
        with self._trace_lock:
            trace = self._traces.get(request_id)
        if trace is None:
            path = self.work_dir / request_id / "trace.npz"
            if not path.is_file():
                raise UserInputError("this video's steps have been cleaned up; generate it again.")
            trace = render.StepTrace.load(path)
        self._remember(request_id, trace)  # most recently used last
        return trace

    # --- housekeeping ---------------------------------------------------------------------------------------------

    def cleanup(self) -> None:
        """Delete request folders older than `max_age_s` (and forget their traces)."""
        deadline = time.time() - self.max_age_s
        for folder in self.work_dir.iterdir():
            if folder.is_dir() and folder.stat().st_mtime < deadline:
                shutil.rmtree(folder, ignore_errors=True)
                with self._trace_lock:
                    self._traces.pop(folder.name, None)


def _reduced(photo: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The photo with its long side at most `max_side` (area-averaged), and the scale applied (1.0: unchanged)."""
    height, width = photo.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1:
        return photo, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA), scale


def _no_driving_face(message: str) -> str:
    """The pipeline's no-face message in the app's words: what the page offers instead of the API's option."""
    found = re.match(r"(no face was found in any of the \d+ driving frames[^.]*?)(?:\. |$)", message)
    said = found.group(1) if found else "no face was found in the driving video"
    return f"{said}. Use a clip that shows a face, or turn off *Find the driving face* to use the frames as they are."


def _scaled_box(box, factor: float, shape) -> tuple[int, int, int, int] | None:
    """A (x0, y0, x1, y1) box multiplied by `factor`, rounded and clipped to a picture of `shape` (H, W, ...)."""
    if box is None:
        return None
    height, width = shape[:2]
    x0, y0, x1, y1 = (value * factor for value in box)
    clip = lambda value, high: int(min(max(round(value), 0), high))
    return clip(x0, width), clip(y0, height), clip(x1, width), clip(y1, height)


def _face_region(box, shape) -> tuple[float, float, float, float]:
    """A square around a face box, `COMPARE_CONTEXT` times its side, moved (and if need be shrunk) into the photo:
    (x0, y0, x1, y1) in the photo's pixels."""
    height, width = shape
    x0, y0, x1, y1 = box
    side = min(COMPARE_CONTEXT * max(x1 - x0, y1 - y0), height, width)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(centre_x - side / 2, 0), width - side)
    top = min(max(centre_y - side / 2, 0), height - side)
    return left, top, left + side, top + side


def _image_size(image_path) -> tuple[int, int] | None:
    """(height, width) of an image file as its header says (no decoding; EXIF turns counted); None if unreadable."""
    try:
        with Image.open(image_path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in (5, 6, 7, 8)
    except (OSError, ValueError, TypeError, AttributeError, Image.DecompressionBombError):
        return None
    return (width, height) if turned else (height, width)
