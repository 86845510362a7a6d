"""Checking what a person sends: the settings and the uploaded image. Every mistake is a `UserInputError` whose
message says what to do (the UI shows it as it is)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from lfdm.driving import MAX_DRIVING_FRAMES, DrivingVideo, load_driving_video
from lfdm.images import check_image_size, load_image, to_rgb_uint8
from lfdm.schedulers import DEFAULT_STEPS

# Shown name -> `lfdm.schedulers.make_scheduler` name. The fast solvers first; the paper samples 1000 DDPM steps.
SCHEDULERS = {"DPM-Solver++": "dpmsolver", "DDIM": "ddim", "UniPC": "unipc", "paper: DDPM 1000": "ddpm"}
DEFAULT_SCHEDULER = "DPM-Solver++"  # shown before a model is loaded, and for a model whose sampler is none of these
PAPER_PRESET = "Paper: DDPM 1000"
STEPS_RANGE = (1, 1000)  # the schedule has 1000 training timesteps; no sampler can take more steps
GUIDANCE_RANGE = (0.0, 10.0)  # 1.0 = plain conditional sampling (the paper); 0 = unconditional
FPS_RANGE = (1.0, 60.0)
SEED_MAX = 2**31 - 1
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
FRAMES_RANGE = (1, 64)  # video length; beyond the model's clip the pipeline chains clips (the slider shows 16-64)
MOTION_SCALE_RANGE = (0.0, 3.0)  # 0 = still picture, 1 = the model's motion


class UserInputError(ValueError):
    """A mistake in what the person asked for; the message says what to do."""


@dataclass(frozen=True)
class GenerationSettings:
    """What to generate besides the image. `scheduler=None` takes the model's own sampler, `steps=None` the
    model's default count for the scheduler (`lfdm.schedulers.default_steps`)."""

    label: str | None = None
    model: str | None = None
    scheduler: str | None = None
    steps: int | None = None
    guidance_scale: float = 1.0
    seed: int = 0
    fps: float = 8.0
    num_frames: int | None = None  # None = the model's clip length
    motion_scale: float = 1.0
    find_face: bool = True  # animate the largest face found (aligned like the training faces), else the whole picture


def check_settings(
    settings: GenerationSettings,
    labels: Sequence[str] | None,
    default_steps: Callable[[str], int] = DEFAULT_STEPS.__getitem__,
) -> GenerationSettings:
    """Validate and normalise the settings (numbers from the API may be floats or strings); `labels=None` skips
    the label. The scheduler (None: `DEFAULT_SCHEDULER`) becomes its `make_scheduler` name, and `steps=None` the
    count `default_steps(name)` gives (the model's, when the caller knows the model)."""
    if labels is not None and settings.label not in labels:
        raise UserInputError(f"unknown action {settings.label!r}; this model knows: {', '.join(labels)}.")
    scheduler = _scheduler_key(settings.scheduler or DEFAULT_SCHEDULER)
    steps = settings.steps
    steps = default_steps(scheduler) if steps in (None, "") else _number("steps", steps, *STEPS_RANGE, whole=True)
    return replace(
        settings,
        scheduler=scheduler,
        steps=int(steps),
        guidance_scale=_number("guidance scale", settings.guidance_scale, *GUIDANCE_RANGE),
        seed=int(_number("seed", settings.seed, 0, SEED_MAX, whole=True)),
        fps=_number("fps", settings.fps, *FPS_RANGE),
        num_frames=_frames(settings.num_frames),
        motion_scale=_number("motion strength", settings.motion_scale, *MOTION_SCALE_RANGE),
        find_face=_flag("find the face", settings.find_face),
    )


def shown_scheduler(name: str | None) -> str:
    """The shown name of a `make_scheduler` name; `DEFAULT_SCHEDULER` for None or a sampler the app does not offer."""
    return next((shown for shown, key in SCHEDULERS.items() if key == name), DEFAULT_SCHEDULER)


def quality_presets(scheduler: str, steps: int) -> dict[str, tuple[str, int]]:
    """The Quality choices for a model whose own sampler is `scheduler` (a shown name of `SCHEDULERS`) with its
    default `steps`: shown label -> (shown scheduler, steps). The model's measured default first, then 25 steps of
    the same sampler (lfdm's default before models measured their own), then the paper's 1000 DDPM steps; a
    choice that repeats an earlier one's sampler and steps is left out."""
    presets = {
        f"Fast (model default, {steps} steps)": (scheduler, steps),
        f"{scheduler}, 25 steps": (scheduler, 25),
        PAPER_PRESET: (shown_scheduler("ddpm"), 1000),
    }
    unique = {}
    for label, setting in presets.items():
        if setting not in unique.values():
            unique[label] = setting
    return unique


def preset_of(presets: dict[str, tuple[str, int]], scheduler: str, steps) -> str | None:
    """The Quality choice that the scheduler and steps boxes show now, or None when they match no choice."""
    try:
        steps = int(steps)
    except (TypeError, ValueError):
        return None
    return next((label for label, setting in presets.items() if setting == (scheduler, steps)), None)


def read_photo(path: str | Path | None) -> np.ndarray:
    """An uploaded file -> uint8 (H, W, 3) RGB at its own size (`lfdm.images.to_rgb_uint8`: any mode, EXIF
    turned, first frame of an animation). Empty files, non-images, truncated files, decompression bombs, tiny or
    thin pictures and files over `MAX_UPLOAD_BYTES` raise UserInputError."""
    if path is None or str(path) == "":
        raise UserInputError("no image: upload a picture (PNG, JPEG, WebP, ...) or pick one of the examples.")
    path = Path(path)
    if not path.is_file():
        raise UserInputError("the uploaded image is gone; upload it again.")
    if path.stat().st_size == 0:
        raise UserInputError("the file is empty; upload the picture again, or use another PNG, JPEG, WebP or BMP file.")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserInputError(f"the file is larger than {MAX_UPLOAD_BYTES // 2**20} MB; use a smaller picture.")
    try:
        photo = to_rgb_uint8(load_image(path))
        check_image_size(*photo.shape[:2])
        return photo
    except (ValueError, FileNotFoundError, TypeError) as error:
        raise UserInputError(_plain(str(error), path)) from error


@dataclass(frozen=True)
class DrivingSettings:
    """How to animate a picture with a driving video. `fps=None` keeps the driving video's frame rate.
    `find_face`: find and frame the picture's face; `driving_face`: find and frame the driving face in every frame
    (both only on a face model)."""

    model: str | None = None
    relative: bool = True
    motion_scale: float = 1.0
    fps: float | None = None
    find_face: bool = True
    driving_face: bool = True


def check_driving_settings(settings: DrivingSettings) -> DrivingSettings:
    """Validate and normalise (numbers from the API may be floats or strings)."""
    fps = None if settings.fps in (None, "", 0) else _number("fps", settings.fps, *FPS_RANGE)
    return replace(
        settings,
        relative=bool(settings.relative),
        find_face=_flag("find the face", settings.find_face),
        driving_face=_flag("find the driving face", settings.driving_face),
        motion_scale=_number("motion strength", settings.motion_scale, *MOTION_SCALE_RANGE),
        fps=fps,
    )


def read_driving_video(path: str | Path | None, size: int) -> DrivingVideo:
    """An uploaded driving video -> `lfdm.driving.DrivingVideo` of at most `MAX_DRIVING_FRAMES` frames at the
    model's size. No file, a file over `MAX_UPLOAD_BYTES`, an unreadable file and a single frame raise
    UserInputError."""
    if path is None or str(path) == "":
        raise UserInputError("no driving video: upload one (mp4, WebM, GIF, ...) or pick one of the example clips.")
    path = Path(path)
    if not path.is_file():
        raise UserInputError("the uploaded driving video is gone; upload it again.")
    if path.stat().st_size > MAX_UPLOAD_BYTES:
        raise UserInputError(f"the driving video is larger than {MAX_UPLOAD_BYTES // 2**20} MB; use a shorter clip.")
    try:
        return load_driving_video(path, size, max_frames=MAX_DRIVING_FRAMES)
    except (ValueError, FileNotFoundError, TypeError, OSError) as error:
        message = _plain(str(error), path).replace(f"{path}", "the driving video")
        raise UserInputError(f"could not read the driving video: {message}") from error


def _frames(value) -> int | None:
    if value in (None, ""):
        return None
    return int(_number("video length (frames)", value, *FRAMES_RANGE, whole=True))


def _scheduler_key(name: str) -> str:
    if name in SCHEDULERS:
        return SCHEDULERS[name]
    if name in SCHEDULERS.values():
        return name
    raise UserInputError(f"unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}.")


def _number(what: str, value, low: float, high: float, *, whole: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise UserInputError(f"{what} must be a number from {low:g} to {high:g}; got {value!r}.") from None
    if not math.isfinite(number) or not low <= number <= high or (whole and number != int(number)):
        kind = "a whole number" if whole else "a number"
        raise UserInputError(f"{what} must be {kind} from {low:g} to {high:g}; got {value!r}.")
    return number


def _flag(what: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value in (0, 1, "true", "false", "True", "False"):
        return value in (1, "true", "True")
    raise UserInputError(f"{what} must be true or false; got {value!r}.")


def _plain(message: str, path: Path) -> str:
    """Keep the server's temporary path out of lfdm's messages: the person only knows 'the image'."""
    message = re.sub(rf" \([^()]*{re.escape(str(path))}[^()]*\)", "", message)  # details that quote the path
    return message.replace(f"image {str(path)!r}", "the image").replace(repr(str(path)), "the file")
