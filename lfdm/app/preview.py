"""The face preview shown as soon as a picture arrives, and the photo sizes a request works with.

`preview_face` finds the face the next generation will animate, draws it on the input and says the size of the
video, without sampling: well under a second even for a 6000x6000 photo, because the face is searched on a copy at
most `max_resolution` px a side (`reduced`), the size a generation uses too.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from lfdm.app import render
from lfdm.framing import SYNTHFACE_FRAMING
from lfdm.photo import frame_photo, output_size
from lfdm.pipeline import LFDMPipeline

NO_MODEL_SIZE = 64  # pixels: the SynthFace crop the preview frames with when no model is loaded


@dataclass(frozen=True)
class FacePreview:
    """The input with the face found drawn on it, and what the person should know about the face search."""

    picture: np.ndarray  # uint8 (H, W, 3), long side at most the service's `preview_size`
    note: str  # Markdown
    face_box: tuple[int, int, int, int] | None  # in the photo's pixels
    video_size: tuple[int, int] | None = None  # (width, height) of the video a generation will make


def preview_face(
    photo: np.ndarray, pipe: LFDMPipeline | None, find_face: bool, *, max_resolution: int, preview_size: int
) -> FacePreview:
    """The face of `photo` (uint8 (H, W, 3)) that `pipe` would animate (None: no model; framed as SynthFace),
    drawn on a copy of at most `preview_size` px, and the note for the page."""
    height, width = photo.shape[:2]
    small, scale = reduced(photo, max_resolution)
    size, model_framing = (pipe.image_size, pipe.framing) if pipe is not None else (NO_MODEL_SIZE, SYNTHFACE_FRAMING)
    framing = frame_photo(small, size, model_framing=model_framing, face="auto" if find_face else "none")
    picture = render.face_preview(small, framing.face_box, preview_size)
    face_box = scaled_box(framing.face_box, 1 / scale, photo.shape)
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
    video_height, video_width = output_size(height, width, "input", max_resolution)
    if scale < 1:
        note += (
            f" The photo is {width}x{height} px; the video will be {video_width}x{video_height} px "
            f"(at most {max_resolution} px a side)."
        )
    return FacePreview(picture=picture, note=note, face_box=face_box, video_size=(video_width, video_height))


def reduced(photo: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The photo with its long side at most `max_side` (area-averaged), and the scale applied (1.0: unchanged)."""
    height, width = photo.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1:
        return photo, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(photo, size, interpolation=cv2.INTER_AREA), scale


def scaled_box(box, factor: float, shape) -> tuple[int, int, int, int] | None:
    """A (x0, y0, x1, y1) box multiplied by `factor`, rounded and clipped to a picture of `shape` (H, W, ...)."""
    if box is None:
        return None
    height, width = shape[:2]
    x0, y0, x1, y1 = (value * factor for value in box)
    clip = lambda value, high: int(min(max(round(value), 0), high))
    return clip(x0, width), clip(y0, height), clip(x1, width), clip(y1, height)


def image_size(image_path) -> tuple[int, int] | None:
    """(height, width) of an image file as its header says (no decoding; EXIF turns counted); None if unreadable."""
    try:
        with Image.open(image_path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in (5, 6, 7, 8)
    except (OSError, ValueError, TypeError, AttributeError, Image.DecompressionBombError):
        return None
    return (width, height) if turned else (height, width)
