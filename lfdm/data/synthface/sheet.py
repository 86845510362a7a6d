"""Contact sheets: one row per expression, frames left to right, label names on the left."""

from __future__ import annotations

import cv2
import numpy as np

from lfdm.data.synthface.expressions import SYNTHFACE_LABELS
from lfdm.data.synthface.render import render_frames

_BACKGROUND = (250, 250, 250)
_INK = (40, 40, 40)


def contact_sheet(
    identity_seeds: int | list[int],
    *,
    resolution: int = 64,
    num_frames: int = 32,
    columns: int = 8,
    take: int = 0,
    labels=SYNTHFACE_LABELS,
) -> np.ndarray:
    """uint8 (rows * resolution + header, label column + columns * resolution, 3) RGB.

    Row r shows label r of `labels` for `identity_seeds` (one seed for every row, or one seed per row), at
    `columns` frames evenly spaced over the video (first and last included); the header gives the frame numbers.
    """
    seeds = [identity_seeds] * len(labels) if isinstance(identity_seeds, int) else list(identity_seeds)
    if len(seeds) != len(labels):
        raise ValueError(f"give one identity seed, or one per label ({len(labels)}); got {len(seeds)}.")
    indices = np.unique(np.linspace(0, num_frames - 1, min(columns, num_frames)).round().astype(int))
    scale = resolution / 64
    font_scale, thickness = 0.42 * max(scale, 1.0), max(1, round(scale))
    label_width = int(
        max(cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)[0][0] for label in labels)
    ) + int(12 * scale)
    header = int(18 * max(scale, 1.0))
    sheet = np.full(
        (header + len(labels) * resolution, label_width + len(indices) * resolution, 3), _BACKGROUND, np.uint8
    )
    for column, index in enumerate(indices):
        x = label_width + column * resolution + int(4 * scale)
        cv2.putText(
            sheet,
            f"{index}",
            (x, header - int(5 * max(scale, 1.0))),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale * 0.85,
            _INK,
            thickness,
            cv2.LINE_AA,
        )
    for row, (label, seed) in enumerate(zip(labels, seeds, strict=True)):
        frames = render_frames(seed, label, take, indices, resolution=resolution, num_frames=num_frames)
        top = header + row * resolution
        sheet[top : top + resolution, label_width:] = np.concatenate(list(frames), axis=1)
        baseline = top + resolution // 2 + int(5 * max(scale, 1.0))
        cv2.putText(
            sheet, label, (int(6 * scale), baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, _INK, thickness, cv2.LINE_AA
        )
    return sheet
