"""Contact sheets: one row per expression, frames left to right, label names on the left."""

from __future__ import annotations

import cv2
import numpy as np

from lfdm.data.synthface.appearance import Appearance
from lfdm.data.synthface.expressions import SYNTHFACE_LABELS
from lfdm.data.synthface.render import render_frames
from lfdm.viz import caption_tile, captioned_rows, tile_grid


def contact_sheet(
    identity_seeds: int | list[int],
    *,
    resolution: int = 64,
    num_frames: int = 32,
    columns: int = 8,
    take: int = 0,
    labels=SYNTHFACE_LABELS,
    looks: list[Appearance | None] | None = None,
) -> np.ndarray:
    """uint8 (header + rows * resolution, label column + columns * resolution, 3) RGB.

    Row r shows label r of `labels` for `identity_seeds` (one seed for every row, or one seed per row), at
    `columns` frames evenly spaced over the video (first and last included); the header gives the frame numbers.
    `looks` gives each row a photographic look (`lfdm.data.synthface.appearance`; None: flat).
    """
    seeds = [identity_seeds] * len(labels) if isinstance(identity_seeds, int) else list(identity_seeds)
    if len(seeds) != len(labels):
        raise ValueError(f"give one identity seed, or one per label ({len(labels)}); got {len(seeds)}.")
    indices = np.unique(np.linspace(0, num_frames - 1, min(columns, num_frames)).round().astype(int))
    zoom = max(resolution / 64, 1.0)
    font_scale = 0.42 * zoom
    widest = max(cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)[0][0] for label in labels)
    header = int(18 * zoom)
    numbers = [caption_tile(f"{index}", resolution, header, font_scale=0.85 * font_scale) for index in indices]
    rows = [("", tile_grid(np.stack(numbers), gap=0))]
    looks = [None] * len(labels) if looks is None else list(looks)
    if len(looks) != len(labels):
        raise ValueError(f"give one look per label ({len(labels)}) or none; got {len(looks)}.")
    for label, seed, look in zip(labels, seeds, looks, strict=True):
        options = {"resolution": resolution, "num_frames": num_frames, "appearance": look}
        frames = render_frames(seed, label, take, indices, **options)
        rows.append((label, tile_grid(frames, gap=0)))
    return captioned_rows(rows, caption_width=int(widest + 12 * zoom), gap=0, font_scale=font_scale)
