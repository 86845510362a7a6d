"""Does a photo's video stay as sharp as the photo? Detail of the face in frame t against frame 0.

*Sharpness* of a region is the variance of the Laplacian of its grey pixels (a standard focus measure: it grows with
fine detail and edges, and falls when a picture is blurred). The *sharpness ratio* of frame t is its sharpness
over frame 0's in the same region, so 1 is "as sharp as the photo", 0.5 is "half the detail", and a ratio well
above 1 means detail that the photo never had (sharpening halos, noise).

The regions are the face box the pipeline reports (`face_box`, photo pixels) and two horizontal bands of it: the
eyes (20-50 % of the box's height from its top) and the mouth (60-95 %), where new content (open eyes, an open
mouth, teeth) appears.

The photo's untouched pixels are checked too: `far_change` is the largest change, in 1/255 units, of pixels
farther than one box side from the face box.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

BANDS = {"face": (0.0, 1.0), "eyes": (0.2, 0.5), "mouth": (0.6, 0.95)}  # fractions of the face box's height


def _grey(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 or float in [0, 1] -> (H, W) float64 grey in [0, 255]."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8:
        frame = np.clip(np.asarray(frame, np.float64) * 255, 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY).astype(np.float64)


def laplacian_variance(grey: np.ndarray) -> float:
    """Variance of the 3x3 Laplacian of a grey (H, W) image, its one-pixel border left out."""
    laplacian = cv2.Laplacian(np.asarray(grey, np.float64), cv2.CV_64F, ksize=1)
    return float(laplacian[1:-1, 1:-1].var())


def band_boxes(face_box: Sequence[int]) -> dict[str, tuple[int, int, int, int]]:
    """name -> (x0, y0, x1, y1) of the face box and its eye and mouth bands, in the same pixels."""
    x0, y0, x1, y1 = (int(value) for value in face_box)
    height = y1 - y0
    return {
        name: (x0, y0 + round(top * height), x1, y0 + round(bottom * height)) for name, (top, bottom) in BANDS.items()
    }


def sharpness_ratios(video: np.ndarray, face_box: Sequence[int], frames: Sequence[int]) -> dict[str, list[float]]:
    """Sharpness of each band of `face_box` at each of `frames` over frame 0's.

    video (F, H, W, 3) uint8 or float in [0, 1], frames at the size `face_box` is given in (photo pixels).
    Returns band name ("face", "eyes", "mouth") -> one ratio per frame of `frames`.
    """
    boxes = band_boxes(face_box)
    ratios = {}
    for name, (x0, y0, x1, y1) in boxes.items():
        if x1 - x0 < 3 or y1 - y0 < 3:
            raise ValueError(f"the {name} band {x0, y0, x1, y1} is too small to measure; use a larger face.")
        first = laplacian_variance(_grey(video[0])[y0:y1, x0:x1])
        ratios[name] = [laplacian_variance(_grey(video[frame])[y0:y1, x0:x1]) / max(first, 1e-12) for frame in frames]
    return ratios


def far_change(video: np.ndarray, face_box: Sequence[int]) -> float:
    """Largest change from frame 0, in 1/255 units, of the pixels more than one box side away from `face_box`
    (0 when there are none)."""
    video = np.asarray(video)
    scale = 1.0 if video.dtype == np.uint8 else 255.0
    height, width = video.shape[1:3]
    x0, y0, x1, y1 = face_box
    margin = max(x1 - x0, y1 - y0)
    far = np.ones((height, width), bool)
    far[max(0, y0 - margin) : y1 + margin, max(0, x0 - margin) : x1 + margin] = False
    if not far.any():
        return 0.0
    pixels = np.asarray(video, np.float64)[:, far] * scale
    return float(np.abs(pixels - pixels[:1]).max())
