"""The files of one generated video: what `python -m lfdm generate` and the app write for each label."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from lfdm.video import write_video
from lfdm.viz import draw_grid, flow_magnitude_max, flow_to_color, occlusion_to_image, panel_strip, to_uint8


def label_slug(label: str) -> str:
    """A folder name for a label: 'forward lunge (left foot forward)' -> 'forward-lunge-left-foot-forward'."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-") or "label"


def write_label_outputs(
    folder: Path,
    label: str,
    reference: np.ndarray,
    frames: np.ndarray,
    warped: np.ndarray,
    flows: np.ndarray,
    occlusions: np.ndarray,
    *,
    fps: float,
    gif: bool,
    panel_size: int,
    model_frames: np.ndarray | None = None,
) -> list[Path]:
    """Write one label's files; reference (S, S, 3) the model's input, frames (F, H, W, 3) the video (any size),
    warped (F, S, S, 3), flows (F, h, w, 2), occlusions (F, h, w); pictures in [0, 1]. The panels show the model's
    own frames `model_frames` (F, S, S, 3) (default: `frames`) beside its input, flows and occlusion maps.
    Returns the written paths."""
    folder.mkdir(parents=True, exist_ok=True)
    video = to_uint8(frames)
    model_video = video if model_frames is None else to_uint8(model_frames)
    # One colour scale for the whole sequence, so the flow pictures do not flicker from frame to frame.
    flow_colors = flow_to_color(flows, max_magnitude=flow_magnitude_max(flows))
    panels = panel_strip(
        [
            ("input", to_uint8(reference)),
            ("generated", model_video),
            ("warped", to_uint8(warped)),
            ("flow", flow_colors),
            ("grid", draw_grid(flows, panel_size)),
            ("occlusion", occlusion_to_image(occlusions, panel_size, interpolation="bicubic")),
        ],
        scale=panel_size / max(model_video.shape[1], panel_size),  # tiles are scaled from the tallest column
        interpolation="bicubic",  # smooth flows and occlusion maps; the app's step inspector shows the exact cells
    )
    written = [write_video(folder / "video.mp4", video, fps), write_video(folder / "panels.mp4", panels, fps)]
    if gif:
        written.append(write_video(folder / "video.gif", video, fps))
    np.savez_compressed(
        folder / "flows.npz",
        flows=np.asarray(flows, np.float32),
        occlusions=np.asarray(occlusions, np.float32),
        labels=np.array([label]),
    )
    written.append(folder / "flows.npz")
    return written
