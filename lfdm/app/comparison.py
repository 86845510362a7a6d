"""The Compare tab's framing: every action of the model side by side, each tile showing the face large enough to
judge. The photo is rendered so that the region around the face is about `COMPARE_TILE` px, then cropped to it;
without a face (or on a whole-picture model), the whole picture at `compare_resolution`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lfdm.photo import frame_photo
from lfdm.pipeline import LFDMPipeline

COMPARE_TILE = 160  # pixels, the height of each action's face in the Compare grid: enough to tell expressions apart
COMPARE_CONTEXT = 1.6  # the Compare crop's side, in face-box sides: brows, chin and a little around them


@dataclass(frozen=True)
class CompareResult:
    video: Path  # every label's video in one captioned grid
    downloads: list[Path]


def compare_framing(
    photo: np.ndarray, pipe: LFDMPipeline, find_face: bool, *, compare_resolution: int, max_resolution: int
) -> tuple[int, tuple[float, float, float, float] | None]:
    """The long side to render `photo` (uint8 (H, W, 3)) at, and the region (x0, y0, x1, y1) of the photo's pixels
    each tile shows (None: the whole picture)."""
    if not (find_face and pipe.framing.is_face):
        return compare_resolution, None
    face_box = frame_photo(photo, pipe.image_size, model_framing=pipe.framing, face="auto").face_box
    if face_box is None:
        return compare_resolution, None
    region = face_region(face_box, photo.shape[:2])
    side = region[2] - region[0]
    wanted = math.ceil(max(photo.shape[:2]) * COMPARE_TILE / side)  # the region then is COMPARE_TILE px
    return int(min(max_resolution, max(compare_resolution, wanted))), region


def face_region(box, shape) -> tuple[float, float, float, float]:
    """A square around a face box, `COMPARE_CONTEXT` times its side, moved (and if need be shrunk) into the photo:
    (x0, y0, x1, y1) in the photo's pixels."""
    height, width = shape
    x0, y0, x1, y1 = box
    side = min(COMPARE_CONTEXT * max(x1 - x0, y1 - y0), height, width)
    centre_x, centre_y = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(centre_x - side / 2, 0), width - side)
    top = min(max(centre_y - side / 2, 0), height - side)
    return left, top, left + side, top + side
