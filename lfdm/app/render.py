"""Pictures and videos the app shows: display videos, the step inspector's frame strips, the comparison grid.

Frames are uint8 (F, H, W, 3); flows are absolute sampling grids (..., h, w, 2) in [-1, 1]; occlusion maps
(..., h, w) in [0, 1], 1 = visible (see `lfdm.latents`). The colour coding is `lfdm.viz`'s.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from lfdm.video import write_video
from lfdm.viz import (
    color_wheel_legend,
    flow_magnitude_max,
    flow_to_color,
    occlusion_to_image,
    panel_strip,
    tile_grid,
    to_uint8,
)

_STRIP_COLUMNS = 10  # frames per row of an inspector strip; 40 frames make 4 rows
_COMPARE_COLUMNS = 4  # labels per row of the comparison grid


@dataclass(frozen=True)
class StepTrace:
    """The predicted clean flows and occlusion maps of the kept sampling steps of one run.

    Attributes:
        flows: (K, F, h, w, 2) float16 sampling grids, K kept steps in sampling order.
        occlusions: (K, F, h, w) float16 in [0, 1].
        steps: (K,) the 1-based number of each kept step.
        timesteps: (K,) the scheduler timestep of each kept step.
        total_steps: how many steps the run took.
        max_magnitude: the longest displacement over every kept step: the one colour scale of the inspector.
    """

    flows: np.ndarray
    occlusions: np.ndarray
    steps: np.ndarray
    timesteps: np.ndarray
    total_steps: int
    max_magnitude: float

    @classmethod
    def from_output(cls, output, *, max_steps: int) -> StepTrace:
        """Keep at most `max_steps` evenly spaced steps (the last always) of the first video's trace."""
        total = len(output.trace_timesteps)
        keep = np.unique(np.linspace(0, total - 1, min(total, max_steps)).round().astype(np.int64))
        flows = np.asarray(output.trace_flows[keep, 0], np.float32)  # (K, F, h, w, 2) of video 0
        return cls(
            flows=flows.astype(np.float16),
            occlusions=np.asarray(output.trace_occlusions[keep, 0]).astype(np.float16),
            steps=keep + 1,
            timesteps=np.asarray(output.trace_timesteps)[keep],
            total_steps=total,
            max_magnitude=flow_magnitude_max(flows),
        )

    def save(self, path: Path) -> None:
        # Uncompressed: written on every request, and compressing noise-like float16 data gains little.
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            flows=self.flows,
            occlusions=self.occlusions,
            steps=self.steps,
            timesteps=self.timesteps,
            total_steps=self.total_steps,
            max_magnitude=self.max_magnitude,
        )

    @classmethod
    def load(cls, path: Path) -> StepTrace:
        with np.load(path) as data:
            return cls(
                flows=data["flows"],
                occlusions=data["occlusions"],
                steps=data["steps"],
                timesteps=data["timesteps"],
                total_steps=int(data["total_steps"]),
                max_magnitude=float(data["max_magnitude"]),
            )


@dataclass(frozen=True)
class DisplayVideos:
    video: Path
    flow_video: Path
    occlusion_video: Path


def upscale(frames: np.ndarray, size: int, *, smooth: bool) -> np.ndarray:
    """uint8 (F, H, W, 3) -> (F, size, size * W / H, 3); bicubic when `smooth`, else nearest (crisp latent cells)."""
    height, width = frames.shape[1:3]
    new_width = max(1, round(width * size / height))
    interpolation = cv2.INTER_CUBIC if smooth else cv2.INTER_NEAREST
    return np.stack([cv2.resize(frame, (new_width, size), interpolation=interpolation) for frame in frames])


def flow_frames(
    flows: np.ndarray, size: int, max_magnitude: float | None = None, *, smooth: bool = False
) -> np.ndarray:
    """Flows (F, h, w, 2) -> colour-wheel frames with the colour key beside them, uint8 (F, H', W', 3); `smooth`
    upsamples the colours bicubically, else each latent cell is a block."""
    colors = upscale(flow_to_color(flows, max_magnitude), size, smooth=smooth)
    return panel_strip([("latent flow", colors), ("colour key", color_wheel_legend(size))])


def occlusion_frames(occlusions: np.ndarray, size: int, *, smooth: bool = False) -> np.ndarray:
    """Occlusion maps (F, h, w) in [0, 1] -> gray frames uint8 (F, size, size, 3); `smooth` as in `flow_frames`."""
    return occlusion_to_image(occlusions, size, interpolation="bicubic" if smooth else "nearest")


def write_display_videos(folder: Path, output, *, fps: float, size: int) -> DisplayVideos:
    """The first video of a pipeline output as three same-length H.264 files: the video (at its own size, upscaled
    to `size` pixels high when smaller), the flows (one colour scale over the sequence, with the key) and the
    occlusion maps), both smoothly upsampled from the latent grid (the step inspector shows the exact cells).
    Encoded in parallel: each file is its own ffmpeg process, which mostly waits on pipes."""
    video = to_uint8(output.frames[0])
    videos = {
        "display.mp4": video if video.shape[1] >= size else upscale(video, size, smooth=True),
        "flow.mp4": flow_frames(output.flows[0], size, smooth=True),
        "occlusion.mp4": occlusion_frames(output.occlusions[0], size, smooth=True),
    }
    with ThreadPoolExecutor(len(videos)) as pool:
        paths = list(pool.map(lambda item: write_video(folder / item[0], item[1], fps), videos.items()))
    return DisplayVideos(*paths)


def face_preview(photo: np.ndarray, box: tuple[int, int, int, int] | None, size: int) -> np.ndarray:
    """uint8 (H, W, 3) photo -> a copy with the long side at most `size` and the face box (photo pixels) drawn."""
    scale = min(1.0, size / max(photo.shape[:2]))
    picture = photo.copy() if scale == 1 else cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if box is not None:
        x0, y0, x1, y1 = (round(value * scale) for value in box)
        thickness = max(2, round(max(picture.shape[:2]) / 200))
        cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), (40, 220, 90), thickness, cv2.LINE_AA)
    return picture


@dataclass(frozen=True)
class StepPictures:
    caption: str
    flow_strip: np.ndarray
    occlusion_strip: np.ndarray


def render_step(trace: StepTrace, index: int, *, tile: int) -> StepPictures:
    """Frame strips of kept step `index`: flows on the trace's one colour scale, occlusion maps in gray."""
    flows = trace.flows[index].astype(np.float32)
    colors = upscale(flow_to_color(flows, trace.max_magnitude), tile, smooth=False)
    caption = (
        f"**Step {trace.steps[index]} of {trace.total_steps}** (timestep {trace.timesteps[index]}): the model's "
        f"estimate of the clean flows and occlusion maps. Full colour = a displacement of "
        f"{trace.max_magnitude:.3f} (the image is 2 wide) at every step."
    )
    occlusions = occlusion_to_image(trace.occlusions[index].astype(np.float32), tile)
    return StepPictures(
        caption, tile_grid(colors, columns=_STRIP_COLUMNS), tile_grid(occlusions, columns=_STRIP_COLUMNS)
    )


def write_step_videos(folder: Path, trace: StepTrace, index: int, *, fps: float, size: int) -> tuple[Path, Path]:
    """Kept step `index` as a flow video (trace colour scale, with key) and an occlusion video; written once."""
    flow_path = folder / f"step{trace.steps[index]:04d}_flow.mp4"
    occlusion_path = folder / f"step{trace.steps[index]:04d}_occlusion.mp4"
    if not flow_path.is_file():
        write_video(flow_path, flow_frames(trace.flows[index].astype(np.float32), size, trace.max_magnitude), fps)
    if not occlusion_path.is_file():
        write_video(occlusion_path, occlusion_to_image(trace.occlusions[index].astype(np.float32), size), fps)
    return flow_path, occlusion_path


def crop_frames(frames: np.ndarray, region, photo_shape) -> np.ndarray:
    """uint8 (F, H, W, 3) video of a photo of `photo_shape` (height, width), at any size -> the part inside
    `region` (x0, y0, x1, y1, photo pixels), at the video's scale."""
    scale = frames.shape[1] / photo_shape[0]
    x0, y0, x1, y1 = (round(value * scale) for value in region)
    return np.ascontiguousarray(frames[:, max(y0, 0) : max(y1, y0 + 1), max(x0, 0) : max(x1, x0 + 1)])


def comparison_frames(videos: dict[str, np.ndarray], *, size: int) -> np.ndarray:
    """label -> uint8 (F, H, W, 3) videos as one captioned grid video, `_COMPARE_COLUMNS` labels per row, each
    tile `size` px high."""
    items = list(videos.items())
    height = next(iter(videos.values())).shape[1]
    rows = [
        panel_strip(items[start : start + _COMPARE_COLUMNS], scale=size / height, interpolation="bicubic")
        for start in range(0, len(items), _COMPARE_COLUMNS)
    ]
    width = max(row.shape[2] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, 2), (0, width - row.shape[2]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(rows, axis=1)


def write_comparison(folder: Path, videos: dict[str, np.ndarray], *, fps: float, size: int) -> tuple[Path, Path]:
    """The comparison grid as H.264 mp4 and GIF; returns both paths."""
    frames = comparison_frames(videos, size=size)
    return write_video(folder / "compare.mp4", frames, fps), write_video(folder / "compare.gif", frames, fps)
