"""The Driving video tab's request: a picture moved like a driving video (`LFDMPipeline.animate`), stoppable between
chunks of decoded frames, and its files: the same views and downloads as a generated video."""

from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfdm.app import render
from lfdm.app.inputs import DrivingSettings, UserInputError
from lfdm.app.runs import GenerationStopped, ProgressFn
from lfdm.driving import DRIVING_LABEL, DrivingVideo
from lfdm.outputs import write_label_outputs
from lfdm.pipeline import LFDMPipeline, LFDMPipelineOutput

FALLBACK_FPS = 8.0  # frames per second when neither the settings nor the driving video say


@dataclass(frozen=True)
class AnimationResult:
    """The files of one picture animated by a driving video; `note` is one line for the page."""

    video: Path
    flow_video: Path
    occlusion_video: Path
    panel_video: Path
    downloads: list[Path]
    note: str


def run_animation(
    pipe: LFDMPipeline,
    photo: np.ndarray,
    driving: DrivingVideo,
    settings: DrivingSettings,
    stop: threading.Event,
    progress: ProgressFn | None,
    *,
    max_resolution: int,
) -> LFDMPipelineOutput:
    """`pipe.animate` (the request's own pipeline) for checked `settings`, at the photo's size: progress after each
    chunk of decoded frames, GenerationStopped when `stop` was set, UserInputError when a face model finds no
    driving face."""

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
            max_resolution=max_resolution,
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
    return output


def write_animation(
    folder: Path,
    output: LFDMPipelineOutput,
    driving: DrivingVideo,
    settings: DrivingSettings,
    *,
    panel_size: int,
    display_size: int,
) -> AnimationResult:
    """The downloads and the displayed videos of an animation in `folder`, and the note that says what was used."""
    fps = settings.fps or driving.fps or FALLBACK_FPS
    outputs = (output.model_input, output.frames[0], output.warped[0], output.flows[0], output.occlusions[0])
    with ThreadPoolExecutor(1) as pool:  # the download files and the display files are encoded side by side
        written = pool.submit(
            write_label_outputs, folder, DRIVING_LABEL, *outputs, fps=fps, gif=True, panel_size=panel_size,
            model_frames=output.model_frames[0],
        )  # fmt: skip
        displays = render.write_display_videos(folder, output, fps=fps, size=display_size)
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


def _no_driving_face(message: str) -> str:
    """The pipeline's no-face message in the app's words: what the page offers instead of the API's option."""
    found = re.match(r"(no face was found in any of the \d+ driving frames[^.]*?)(?:\. |$)", message)
    said = found.group(1) if found else "no face was found in the driving video"
    return f"{said}. Use a clip that shows a face, or turn off *Find the driving face* to use the frames as they are."
