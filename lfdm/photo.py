"""Photo coordinates: which picture the model animates, and how its flows come back onto the photo at any size.

The models work in their own square frame (`size` px, the LFAE's `image_size`). A `Framing` holds the photo and
the 2x3 matrix from photo pixels to that frame:
- the whole picture: resized with its aspect kept and padded black (`lfdm.data.transforms.resize_and_pad`, as the
  training frames were); the model's input is exactly what `lfdm.images.preprocess_image` gives;
- a face (`lfdm.faces`): the similarity transform that puts the eyes where SynthFace draws them.

`render_photo_video` turns the model's flows (B, F, h, w, 2), occlusion maps (B, F, h, w) and decoded frames
(B, F, S, S, 3) into video at the photo's aspect and any size: the flows are upsampled and warp the photo's own
pixels; the decoder's (upsampled) output is blended in only where the occlusion map says the content is new; a
face crop goes back into the photo through the inverse transform with a feathered edge. Motion is measured from
frame 0 (flow minus frame 0's flow, occlusion relative to frame 0's), so frame 0 is the photo itself.

Pixel coordinates put pixel centres on integers (OpenCV's convention); a model-frame coordinate c maps to the
sampling-grid coordinate (2 c + 1) / S - 1 of `grid_sample(align_corners=False)`.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from lfdm import faces
from lfdm.data.transforms import resize_and_pad
from lfdm.images import check_image_size, load_image, to_rgb_uint8

logger = logging.getLogger(__name__)

FACE_MODES = ("auto", "none", "require")
MIN_RESOLUTION = 16  # pixels, the shortest long side an output may have
FEATHER = 0.3  # fraction of the crop's half-side over which a pasted face crop fades into the photo
_NEW_CONTENT_EPS = 1e-3


@dataclass(frozen=True)
class Framing:
    """A photo and the frame the model animates.

    Attributes:
        photo: uint8 (H, W, 3) RGB, the input as given (EXIF turned, any mode made RGB).
        matrix: float (2, 3) photo pixels -> model-frame pixels.
        size: side of the model frame, pixels.
        model_input: uint8 (size, size, 3), the picture the model animates.
        face: the face used, or None (the whole picture is animated).
        note: what happened to the face search, for the person (None when a face was found and nothing is odd).
        aligned: True when the model's frame is a face crop (pasted back with a feathered edge); False when it
            holds the whole picture.
    """

    photo: np.ndarray
    matrix: np.ndarray
    size: int
    model_input: np.ndarray
    face: faces.Face | None = None
    note: str | None = None
    aligned: bool = False

    @property
    def face_box(self) -> tuple[int, int, int, int] | None:
        """(x0, y0, x1, y1) of the face used, in the photo's pixels (rounded, clipped to the photo), or None."""
        if self.face is None:
            return None
        height, width = self.photo.shape[:2]
        x0, y0, x1, y1 = self.face.box
        return (
            int(np.clip(round(x0), 0, width)),
            int(np.clip(round(y0), 0, height)),
            int(np.clip(round(x1), 0, width)),
            int(np.clip(round(y1), 0, height)),
        )

    def model_tensor(self) -> torch.Tensor:
        """The model's input as (1, 3, size, size) float32 in [0, 1] on the CPU (`preprocess_image`'s layout)."""
        return torch.from_numpy(np.ascontiguousarray(self.model_input)).permute(2, 0, 1)[None].float() / 255


def check_photo_options(face: str, resolution, max_resolution: int) -> None:
    """ValueError for a `face`, `resolution` or `max_resolution` that `frame_photo` / `render_photo_video` refuse."""
    if face not in FACE_MODES:
        raise ValueError(f"`face` must be one of {FACE_MODES}; got {face!r}.")
    if isinstance(max_resolution, bool) or not isinstance(max_resolution, (int, np.integer)):
        raise ValueError(f"`max_resolution` must be a whole number of pixels; got {max_resolution!r}.")
    if max_resolution < MIN_RESOLUTION:
        raise ValueError(f"`max_resolution` must be at least {MIN_RESOLUTION} pixels; got {max_resolution}.")
    if resolution is None or resolution == "input":
        return
    if isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer)) or resolution < MIN_RESOLUTION:
        raise ValueError(
            f"`resolution` must be None (the model's size), 'input' (the photo's size) or a whole number of pixels "
            f">= {MIN_RESOLUTION} (the long side); got {resolution!r}."
        )


def letterbox_matrix(height: int, width: int, size: int) -> np.ndarray:
    """(2, 3) photo pixels -> pixels of `resize_and_pad(photo, size)` (the same rounding of the resized sides)."""
    ratio = size / max(height, width)
    new_height, new_width = max(1, int(height * ratio)), max(1, int(width * ratio))
    top, left = (size - new_height) // 2, (size - new_width) // 2
    scale_x, scale_y = new_width / width, new_height / height
    # a resize maps pixel centres: x' = (x + 0.5) * scale - 0.5
    return np.array([[scale_x, 0.0, 0.5 * scale_x - 0.5 + left], [0.0, scale_y, 0.5 * scale_y - 0.5 + top]])


def frame_photo(image, size: int, *, face: str = "auto") -> Framing:
    """Decide what the model animates: the photo's largest face (aligned like SynthFace's) or the whole picture.

    `image`: anything `lfdm.images.preprocess_image` takes. `face`: "auto" uses a face when one is found and the
    whole picture otherwise (with a note); "none" always the whole picture; "require" raises ValueError when no
    usable face is found. A face already framed like SynthFace's training faces (eye spacing, angle and position
    within the training range once the picture is padded to a square) is animated in place, without re-sampling.
    """
    check_photo_options(face, None, MIN_RESOLUTION)
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    photo = to_rgb_uint8(image)
    check_image_size(*photo.shape[:2])
    whole = Framing(photo, letterbox_matrix(*photo.shape[:2], size), size, resize_and_pad(photo, size))
    if face == "none":
        return whole
    found = faces.detect_faces(photo)
    if any(candidate.eyes_found for candidate in found):  # then the others are most likely not faces
        found = [candidate for candidate in found if candidate.eyes_found]
    usable = [candidate for candidate in found if candidate.side >= faces.MIN_FACE_SIDE]
    if not usable:
        if found:
            message = (
                f"the only face found is {found[0].side:.0f} px wide; faces need at least {faces.MIN_FACE_SIDE} px "
                "to be animated. Use a larger or closer photo"
            )
        else:
            message = "no face was found in the picture (drawn and cartoon faces are rarely found)"
        if face == "require":
            raise ValueError(f"{message}; or pass face='auto' or 'none' to animate the whole picture.")
        return _with_note(whole, f"{message[:1].upper()}{message[1:]}; the whole picture is animated.")
    chosen = usable[0]
    note = f"{len(usable)} faces were found; the largest clear one is animated." if len(usable) > 1 else None
    if faces.framed_like_training(_apply(whole.matrix, chosen.eyes), size):
        return Framing(photo, whole.matrix, size, whole.model_input, chosen, note, aligned=False)
    matrix = faces.alignment_matrix(chosen.eyes, size)
    return Framing(photo, matrix, size, faces.warp_to_crop(photo, matrix, size), chosen, note, aligned=True)


def _with_note(framing: Framing, note: str) -> Framing:
    logger.info("%s", note)
    return Framing(framing.photo, framing.matrix, framing.size, framing.model_input, note=note)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return np.asarray(points, float) @ matrix[:, :2].T + matrix[:, 2]


def output_size(height: int, width: int, resolution, max_resolution: int) -> tuple[int, int]:
    """(height, width) of the rendered video: the photo's aspect, long side `resolution` ("input": the photo's),
    at most `max_resolution`."""
    long_side = max(height, width) if resolution == "input" else int(resolution)
    long_side = min(long_side, int(max_resolution))
    ratio = long_side / max(height, width)
    return max(1, round(height * ratio)), max(1, round(width * ratio))


def render_photo_video(
    framing: Framing,
    flows: torch.Tensor,
    occlusions: torch.Tensor,
    model_frames: torch.Tensor,
    out_size: tuple[int, int],
) -> torch.Tensor:
    """Video of the photo at `out_size` (height, width) from the model's output on `framing.model_input`.

    flows (B, F, h, w, 2) absolute sampling grids; occlusions (B, F, h, w) in [0, 1]; model_frames (B, F, 3, S, S)
    in [0, 1], the decoder's frames. Returns (B, F, 3, H, W) float32 in [0, 1] on the CPU.

    Per frame f: the displacement d_f = flow_f - flow_0 and the new content n_f = (m_0 - m_f) / m_0 (what was
    visible in frame 0 and is not now), both upsampled; the photo's pixels at output size warped by d_f, mixed with the
    decoder's frame where n_f says so; a face crop then fades into the untouched photo near its edge.
    """
    flows, occlusions = flows.float().cpu(), occlusions.float().cpu()
    model_frames = model_frames.float().cpu()
    height, width = out_size
    base = _resized_photo(framing.photo, height, width)  # (3, H, W) float32 in [0, 1]
    # output pixels -> model-frame pixels: undo the output scaling (centres), then the framing matrix
    scale_y, scale_x = height / framing.photo.shape[0], width / framing.photo.shape[1]
    to_photo = np.array([[1 / scale_x, 0, 0.5 / scale_x - 0.5], [0, 1 / scale_y, 0.5 / scale_y - 0.5], [0, 0, 1]])
    to_model = np.vstack([framing.matrix, [0, 0, 1]]) @ to_photo  # (3, 3)
    top, bottom, left, right = _model_region(to_model, framing.size, height, width)
    video = base.expand(flows.shape[0], flows.shape[1], -1, -1, -1).clone()
    if bottom <= top or right <= left:
        return video  # the face crop lies outside the output
    ys, xs = torch.meshgrid(
        torch.arange(top, bottom, dtype=torch.float64), torch.arange(left, right, dtype=torch.float64), indexing="ij"
    )
    linear = torch.from_numpy(to_model[:2, :2])
    model_x = to_model[0, 0] * xs + to_model[0, 1] * ys + to_model[0, 2]
    model_y = to_model[1, 0] * xs + to_model[1, 1] * ys + to_model[1, 2]
    size = framing.size
    grid = torch.stack([(2 * model_x + 1) / size - 1, (2 * model_y + 1) / size - 1], dim=-1).float()  # (h', w', 2)
    weight = _feather(grid) if framing.aligned else torch.ones(grid.shape[:2])
    # displacement in model pixels -> output pixels: the inverse of the linear part
    back = torch.linalg.inv(linear).float() * (size / 2)  # grid units -> output pixels
    for index in range(flows.shape[0]):
        displacement = rearrange(flows[index] - flows[index, :1], "f h w c -> f c h w")
        first = occlusions[index, :1]  # frame 0's occlusion map: what the photo itself shows
        new_content = ((first - occlusions[index]) / first.clamp_min(_NEW_CONTENT_EPS)).clamp(0, 1)
        region_grid = grid.expand(flows.shape[1], -1, -1, -1)
        moved = _sample(displacement, region_grid)  # (F, 2, h', w') grid units
        shift = torch.einsum("ij,fjhw->fihw", back, moved)  # (F, 2, h', w') output pixels
        source_x = xs.float() + shift[:, 0]
        source_y = ys.float() + shift[:, 1]
        photo_grid = torch.stack([(2 * source_x + 1) / width - 1, (2 * source_y + 1) / height - 1], dim=-1)
        warped = F.grid_sample(
            base.expand(flows.shape[1], -1, -1, -1), photo_grid, mode="bilinear", padding_mode="border",
            align_corners=False,
        )  # fmt: skip
        newness = _sample(new_content[:, None], region_grid)  # (F, 1, h', w')
        decoded = _sample(model_frames[index], region_grid)  # (F, 3, h', w')
        animated = warped + newness * (decoded - warped)
        region = video[index, :, :, top:bottom, left:right]
        video[index, :, :, top:bottom, left:right] = region + weight * (animated - region)
    return video.clamp_(0, 1)


def _resized_photo(photo: np.ndarray, height: int, width: int) -> torch.Tensor:
    if photo.shape[:2] != (height, width):
        shrink = height < photo.shape[0]
        photo = cv2.resize(photo, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return torch.from_numpy(np.array(photo)).permute(2, 0, 1).float() / 255  # a copy: the photo may be read-only


def _model_region(to_model: np.ndarray, size: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the output pixels that the model's frame covers (clipped to the output)."""
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    photo_corners = corners @ np.linalg.inv(to_model).T
    left, top = np.floor(photo_corners[:, :2].min(0)).astype(int)
    right, bottom = np.ceil(photo_corners[:, :2].max(0)).astype(int) + 1
    return max(top, 0), min(bottom, height), max(left, 0), min(right, width)


def _sample(maps: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """maps (F, C, h, w) read at grid (F, h', w', 2) (bilinear, edges repeated) -> (F, C, h', w')."""
    return F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _feather(grid: torch.Tensor) -> torch.Tensor:
    """(h', w') weight of the pasted crop: 1 inside, falling smoothly to 0 at the crop's edge (a rounded square,
    so the corners, far from the face, keep the photo)."""
    radius = grid.abs().pow(4).sum(-1).pow(0.25)  # 1 on the rounded square inscribed in the crop
    ramp = ((1 - radius) / FEATHER).clamp(0, 1)
    return ramp * ramp * (3 - 2 * ramp)


def psnr_db(first: np.ndarray, second: np.ndarray) -> float:
    """PSNR in dB of two float pictures in [0, 1] (inf when equal)."""
    error = float(np.mean((np.asarray(first, np.float64) - np.asarray(second, np.float64)) ** 2))
    return math.inf if error == 0 else 10 * math.log10(1 / error)
