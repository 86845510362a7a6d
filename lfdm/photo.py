"""Photo coordinates: which picture the model animates, and how its flows come back onto the photo at any size.

The models work in their own square frame (`size` px, the LFAE's `image_size`). A `Framing` holds the photo and
the 2x3 matrix from photo pixels to that frame:
- the whole picture: resized with its aspect kept and padded black (`lfdm.data.transforms.resize_and_pad`, as the
  training frames were); the model's input is exactly what `lfdm.images.preprocess_image` gives;
- a face (`lfdm.faces`): the similarity transform that puts the eyes where the model's training faces have them
  (the model's `lfdm.framing.ModelFraming`, saved with it; a whole-picture model is never given a face crop).

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
import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from einops import rearrange

from lfdm import faces
from lfdm.data.transforms import resize_and_pad
from lfdm.framing import FACE_MODES, ModelFraming
from lfdm.images import check_image_size, load_image, to_rgb_uint8

logger = logging.getLogger(__name__)

MIN_RESOLUTION = 16  # pixels, the shortest long side an output may have
FEATHER = 0.3  # fraction of the crop's half-side over which a pasted face crop fades into the photo
_NEW_CONTENT_EPS = 1e-3
# An opening mouth. Where content is new inside the mouth's zone (an ellipse below the eyes: its centre 1.15 eye
# spacings below their midpoint, as in adult faces, half-axes 0.6 and 0.55 spacings) and the decoder's frame is
# darker there than its frame 0 by more than the first luma figure (full effect at the second), the warped photo is
# shaded like a mouth's interior: multiplied by a dark red-brown, so its texture stays and nothing is smeared in.
# The decoder, trained on SynthFace at 64 px, paints a real face's open mouth only a little darker (a luma drop of
# 0.13-0.17 inside surprise's open mouth, under 0.03 where happiness and fear only part the lips over the teeth);
# the thresholds keep teeth that the photo shows.
_MOUTH_ZONE = {"below_eyes": 1.15, "half_width": 0.6, "half_height": 0.55, "edge": 0.3}  # eye spacings; edge: ramp
_MOUTH_DARKENING = (0.04, 0.12)  # luma drop of the decoder's frame where the shading starts, and where it is full
_MOUTH_INTERIOR = np.array([0.3, 0.16, 0.16], np.float32)  # RGB factor of the warped photo in an open mouth
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601


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


def frame_photo(image, size: int, *, model_framing: ModelFraming, face: str = "auto") -> Framing:
    """Decide what the model animates: the photo's largest face (aligned like the model's faces) or the whole picture.

    `image`: anything `lfdm.images.preprocess_image` takes. `model_framing`: how the model's training pictures were
    framed (`LFDMPipeline.framing`). `face`: "auto" follows the model: a whole-picture model gets the whole picture
    (no face search); a face model gets a face when one is found and the whole picture otherwise (with a note).
    "none" always the whole picture; "require" raises ValueError when no usable face is found (or the model
    animates whole pictures). A face already framed like the model's training faces (eye spacing, angle and position
    within `model_framing.eye_range` once the picture is padded to a square) is animated in place, without
    re-sampling.
    """
    check_photo_options(face, None, MIN_RESOLUTION)
    if face == "require" and not model_framing.is_face:
        raise ValueError(
            "this model animates whole pictures (its framing is 'whole'), so it aligns no faces; "
            "pass face='auto' or 'none'."
        )
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    photo = to_rgb_uint8(image)
    check_image_size(*photo.shape[:2])
    whole = Framing(photo, letterbox_matrix(*photo.shape[:2], size), size, resize_and_pad(photo, size))
    if face == "none" or not model_framing.is_face:
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
    if faces.framed_like_training(_apply(whole.matrix, chosen.eyes), size, model_framing.eye_range):
        return Framing(photo, whole.matrix, size, whole.model_input, chosen, note, aligned=False)
    matrix = faces.alignment_matrix(chosen.eyes, size, model_framing.target_eyes())
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
    refiner=None,
) -> torch.Tensor:
    """Video of the photo at `out_size` (height, width) from the model's output on `framing.model_input`.

    flows (B, F, h, w, 2) absolute sampling grids; occlusions (B, F, h, w) in [0, 1]; model_frames (B, F, 3, S, S)
    in [0, 1], the decoder's frames. Returns (B, F, 3, H, W) float32 in [0, 1] on the CPU.

    Per frame f: the displacement d_f = flow_f - flow_0 and the new content n_f = (m_0 - m_f) / m_0 (what was
    visible in frame 0 and is not now), both upsampled; the photo's pixels at output size warped by d_f, mixed
    with painted content where it is new; a face crop then fades into the untouched photo near its edge. The
    painted pixels are the `refiner`'s (`lfdm.models.refiner.PhotoRefiner`: detail at `refiner.config.scale` x the
    model's size, around the new content only) with its gate, or without one the decoder's change (its frame minus
    its frame 0 warped like the photo), with n_f as the gate, on the warped photo; where the decoder darkens new
    content in the mouth's zone of a found face, the warped photo is shaded like an open mouth (`_shade_mouth`).
    OpenCV does the resampling (`remap` of the photo: Lanczos; `warpAffine` of the coarse maps: cubic; pixel centres
    on integers, edges repeated).
    """
    flows = flows.detach().float().cpu().numpy()
    occlusions = occlusions.detach().float().cpu().numpy()
    model_frames = rearrange(model_frames.detach().float().cpu(), "b f c h w -> b f h w c").numpy()
    height, width = out_size
    # output pixels -> photo pixels (centres) -> model-frame pixels
    scale_y, scale_x = height / framing.photo.shape[0], width / framing.photo.shape[1]
    to_photo = np.array([[1 / scale_x, 0, 0.5 / scale_x - 0.5], [0, 1 / scale_y, 0.5 / scale_y - 0.5], [0, 0, 1]])
    # Every frame samples the photo once: its own pixels when the video is as large or larger (the resize and the
    # displacement composed into one lookup), else the photo shrunk to the video's size (area-averaged first, so
    # that shrinking does not alias). xs, ys: where each output pixel samples `source` when nothing moves.
    if height >= framing.photo.shape[0]:
        source, to_source = framing.photo.astype(np.float32) / 255, to_photo
    else:
        source, to_source = cv2.resize(framing.photo, (width, height), interpolation=cv2.INTER_AREA), np.eye(3)
        source = source.astype(np.float32) / 255
    xs, ys = _points(to_source, width, height)
    base = _sample(source, xs, ys)  # (H, W, 3) float32: the photo at the video's size, frame 0
    video = np.repeat(np.repeat(base[None, None], flows.shape[1], axis=1), flows.shape[0], axis=0)
    to_model = np.vstack([framing.matrix, [0, 0, 1]]) @ to_photo
    top, bottom, left, right = _model_region(to_model, framing.size, height, width)
    if bottom <= top or right <= left:
        return torch.from_numpy(video).permute(0, 1, 4, 2, 3)  # the face crop lies outside the output
    region_size = (right - left, bottom - top)
    region_to_output = np.array([[1, 0, left], [0, 1, top], [0, 0, 1]])
    region_to_model = to_model @ region_to_output  # region pixels -> model pixels
    size = framing.size
    # a displacement in grid units (the frame is 2 wide) -> model pixels (size / 2) -> source pixels
    grid_to_source = to_source[:2, :2] @ np.linalg.inv(region_to_model[:2, :2]) * (size / 2)
    model_points = _points(region_to_model, *region_size)  # (x, y) model-frame pixels of every region pixel
    weight = _feather(model_points, size) if framing.aligned else None
    region = _Grid(xs[top:bottom, left:right], ys[top:bottom, left:right], region_to_model)
    model_to_source = to_source @ np.linalg.inv(to_model)
    mouth = _mouth_zone(framing, model_points)
    flags = cv2.WARP_INVERSE_MAP
    for index in range(flows.shape[0]):
        shift = (flows[index] - flows[index, :1]) @ grid_to_source.T  # (F, h, w, 2) source pixels, 0 at frame 0
        first = occlusions[index, :1]  # frame 0's occlusion map: what the photo itself shows
        new_content = np.clip((first - occlusions[index]) / np.maximum(first, _NEW_CONTENT_EPS), 0, 1)
        maps = np.concatenate([shift, new_content[..., None]], axis=-1).astype(np.float32)  # (F, h, w, 3)
        painted = None
        if refiner is not None:
            painted = _refine(refiner, source, maps, model_frames[index], model_to_source, size)
        for frame in range(1, flows.shape[1]):  # frame 0 is the photo: no displacement, nothing new
            # the decoder's frames are needed only where the decoder's change is added, and only if anything is new
            with_decoder = painted is None and bool(maps[frame, ..., 2].max() > 0)
            inputs = _frame_inputs(
                source, region, maps, model_frames[index], frame, model_to_source, size, with_decoder
            )
            animated = inputs.warped
            if with_decoder:  # the decoder's change where content is new, and the shadow of an opening mouth
                change = inputs.decoded - inputs.decoded_start
                animated = animated + inputs.new_content * change
                if mouth is not None:
                    box = mouth.box
                    animated[box] = _shade_mouth(animated[box], change[box], inputs.new_content[box] * mouth.weight)
            elif painted is not None and frame in painted:  # the refiner's change and gate, from its frame
                region_to_box = np.linalg.inv(painted[frame].to_model) @ region_to_model
                both = cv2.warpAffine(
                    painted[frame].pixels,
                    region_to_box[:2],
                    region_size,
                    flags=flags | cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )  # (h', w', 4): paint minus warped photo, gate
                # the refiner's frame may be coarser than the photo's face: its change goes onto this warp's detail
                animated = animated + both[..., 3:] * both[..., :3]
            target = video[index, frame, top:bottom, left:right]
            target += animated - target if weight is None else weight * (animated - target)
    return torch.from_numpy(video).permute(0, 1, 4, 2, 3)


@dataclass(frozen=True)
class _Grid:
    """Pixels to render: xs, ys (h, w) float32 where each samples the photo's `source` when nothing moves, and
    to_model (3, 3) their pixel coordinates -> model-frame pixels."""

    xs: np.ndarray
    ys: np.ndarray
    to_model: np.ndarray


@dataclass(frozen=True)
class _FrameInputs:
    """One frame on a `_Grid`, float32: warped (h, w, 3) the photo warped by the displacement; decoded (h, w, 3) the
    decoder's frame; decoded_start (h, w, 3) the decoder's frame 0 warped like the photo (both None when not asked
    for); new_content (h, w, 1)."""

    warped: np.ndarray
    decoded: np.ndarray | None
    decoded_start: np.ndarray | None
    new_content: np.ndarray


def _frame_inputs(
    source, grid: _Grid, maps, model_frames, frame: int, model_to_source, size: int, with_decoder: bool = True
) -> _FrameInputs:
    """The photo, the decoder's frame and its frame 0 on `grid` at `frame` (`with_decoder=False`: the photo only,
    decoded and decoded_start None). maps (F, h', w', 3) latent shift (source pixels) and new content; model_frames
    (F, S, S, 3) the decoder's frames; model_to_source (3, 3) model-frame pixels -> source pixels. The coarse maps
    are upsampled smoothly (cubic): a bilinear displacement would bend straight lines at cell edges."""
    height, width = grid.xs.shape
    ratio = maps.shape[1] / size
    model_to_latent = np.array([[ratio, 0, 0.5 * ratio - 0.5], [0, ratio, 0.5 * ratio - 0.5], [0, 0, 1]])
    flags = cv2.WARP_INVERSE_MAP
    moved = cv2.warpAffine(
        maps[frame],
        (model_to_latent @ grid.to_model)[:2],
        (width, height),
        flags=flags | cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REPLICATE,
    )  # (h, w, 3): shift x, shift y, new content
    points_x, points_y = grid.xs + moved[..., 0], grid.ys + moved[..., 1]  # where each pixel samples the photo
    warped, new_content = _sample(source, points_x, points_y), np.clip(moved[..., 2:], 0, 1)
    if not with_decoder:
        return _FrameInputs(warped, None, None, new_content)
    decoded = cv2.warpAffine(
        model_frames[frame], grid.to_model[:2], (width, height), flags=flags | cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip
    # the decoder's frame 0 sampled where the photo is: what it shows when the content only moves
    model_x, model_y = _apply_to_points(np.linalg.inv(model_to_source), points_x, points_y)
    decoded_start = cv2.remap(model_frames[0], model_x, model_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return _FrameInputs(warped, decoded, decoded_start, new_content)


@dataclass(frozen=True)
class _Painted:
    """The refiner's output for one frame: pixels (h, w, 4) float32, its paint minus the warped photo (RGB) and its
    gate, on a box of its frame; to_model (3, 3) box pixels -> model-frame pixels."""

    pixels: np.ndarray
    to_model: np.ndarray


_REFINE_THRESHOLD = 0.02  # new content below this is left to the warp
_REFINE_MARGIN = 1  # latent cells around the new content that the refiner also sees


@torch.no_grad()
def _refine(refiner, source, maps, model_frames, model_to_source, size: int) -> dict[int, _Painted]:
    """Run `refiner` on the frames of one video where content is new: frame -> `_Painted`.

    source (h, w, 3) float32 the photo as sampled; maps (F, h', w', 3) float32 latent shift (source pixels) and new
    content; model_frames (F, S, S, 3) the decoder's frames; model_to_source (3, 3) model-frame pixels -> source
    pixels. The refiner works at `scale` x the model's size on one box that holds every frame's new content (with a
    margin), its sides multiples of the refiner's patch; frame 0 (the photo itself) is never painted.
    """
    scale, patch = int(refiner.config.scale), int(refiner.config.patch)
    latent = maps.shape[1]
    cells = (maps[1:, ..., 2] > _REFINE_THRESHOLD).any(0)
    if not cells.any():
        return {}
    rows, columns = np.nonzero(cells)
    cell = size * scale / latent  # refiner pixels per latent cell
    full = size * scale
    y0, y1 = (max(0, rows.min() - _REFINE_MARGIN), min(latent, rows.max() + 1 + _REFINE_MARGIN))
    x0, x1 = (max(0, columns.min() - _REFINE_MARGIN), min(latent, columns.max() + 1 + _REFINE_MARGIN))
    down = lambda value: int(value * cell) // patch * patch
    up = lambda value: min(full, -(-int(np.ceil(value * cell)) // patch) * patch)
    top, bottom, left, right = down(y0), up(y1), down(x0), up(x1)
    box_size = (right - left, bottom - top)
    # refiner box pixels -> model pixels: a resize by 1 / scale (pixel centres) after the box's offset
    box_to_model = np.array(
        [[1 / scale, 0, (left + 0.5) / scale - 0.5], [0, 1 / scale, (top + 0.5) / scale - 0.5], [0, 0, 1]]
    )
    box = _Grid(*_points(model_to_source @ box_to_model, *box_size), box_to_model)
    frames = range(1, maps.shape[0])
    inputs = [_frame_inputs(source, box, maps, model_frames, frame, model_to_source, size) for frame in frames]
    device = refiner.device
    # (F, h, w, C) -> (F, C, h, w)
    stack = lambda name: torch.from_numpy(np.stack([getattr(one, name) for one in inputs])).permute(0, 3, 1, 2)
    names = ("warped", "decoded", "decoded_start", "new_content")
    output = refiner(*(stack(name).to(device) for name in names))
    change = output.paint.float() - stack("warped").to(output.paint.device)
    pixels = torch.cat([change, output.gate.float()], 1).permute(0, 2, 3, 1).cpu().numpy()
    return {frame: _Painted(pixels[k], box_to_model) for k, frame in enumerate(frames)}


def _points(matrix: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """xs, ys (height, width) float32: `matrix` (3, 3) applied to the pixel grid of a `width` x `height` image."""
    columns, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
    return _apply_to_points(matrix, columns, rows)


def _apply_to_points(matrix: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`matrix` (3, 3 or 2, 3) applied to the points (xs, ys) of any shape, computed in float64, as float32."""
    x = matrix[0, 0] * xs + matrix[0, 1] * ys + matrix[0, 2]
    y = matrix[1, 0] * xs + matrix[1, 1] * ys + matrix[1, 2]
    return x.astype(np.float32), y.astype(np.float32)


def _sample(source: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """`source` (h, w, 3) float32 at the points (xs, ys) (H, W) of its pixel grid (centres on integers, edges
    repeated). Lanczos (8 x 8): under the sub-pixel shifts of a moving face it keeps more of the photo's fine detail
    than bicubic, and far more than bilinear, which halves it (`benchmarks/RESULTS.md`, "Photographic frames"); it
    returns a pixel exactly where a point falls on its centre, so an unmoved pixel is the photo's."""
    return cv2.remap(source, xs, ys, cv2.INTER_LANCZOS4, borderMode=cv2.BORDER_REPLICATE)


def _model_region(to_model: np.ndarray, size: int, height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the output pixels that the model's frame covers (clipped to the output)."""
    corners = np.array([[-0.5, -0.5, 1], [size - 0.5, -0.5, 1], [-0.5, size - 0.5, 1], [size - 0.5, size - 0.5, 1]])
    photo_corners = corners @ np.linalg.inv(to_model).T
    left, top = np.floor(photo_corners[:, :2].min(0)).astype(int)
    right, bottom = np.ceil(photo_corners[:, :2].max(0)).astype(int) + 1
    return max(top, 0), min(bottom, height), max(left, 0), min(right, width)


def _feather(model_points: tuple[np.ndarray, np.ndarray], size: int) -> np.ndarray:
    """(h', w', 1) weight of the pasted crop over the region: 1 inside, falling smoothly to 0 at the crop's edge (a
    rounded square, so that its corners, far from the face, keep the photo); model_points: the region pixels'
    model-frame (x, y), each (h', w')."""
    model_x, model_y = model_points
    grid_x, grid_y = (2 * model_x + 1) / size - 1, (2 * model_y + 1) / size - 1  # the crop spans [-1, 1]
    radius = (grid_x**4 + grid_y**4) ** 0.25  # 1 on the rounded square inscribed in the crop
    return _smoothstep((1 - radius) / FEATHER)[..., None]


@dataclass(frozen=True)
class _Zone:
    """A weight (h, w, 1) float32 on the rows and columns `box` (a pair of slices) of the rendered region."""

    box: tuple[slice, slice]
    weight: np.ndarray


def _mouth_zone(framing: Framing, model_points: tuple[np.ndarray, np.ndarray]) -> _Zone | None:
    """The mouth's zone on the region (`_MOUTH_ZONE`, placed by the face's eyes and turned with them), or None when
    no face was found (a whole picture: nothing is taken for a mouth) or the zone lies outside the region."""
    if framing.face is None:
        return None
    eyes = _apply(framing.matrix, framing.face.eyes)  # model-frame pixels
    across = eyes[1] - eyes[0]
    spacing = float(np.hypot(*across))
    across = across / spacing
    down = np.array([-across[1], across[0]])  # image y points down: the eye line turned a quarter clockwise
    centre = eyes.mean(0) + _MOUTH_ZONE["below_eyes"] * spacing * down
    x, y = model_points[0] - centre[0], model_points[1] - centre[1]
    u = (x * across[0] + y * across[1]) / (_MOUTH_ZONE["half_width"] * spacing)
    v = (x * down[0] + y * down[1]) / (_MOUTH_ZONE["half_height"] * spacing)
    weight = _smoothstep((1 - np.hypot(u, v)) / _MOUTH_ZONE["edge"])
    rows, columns = np.nonzero(weight)
    if rows.size == 0:
        return None
    box = (slice(rows.min(), rows.max() + 1), slice(columns.min(), columns.max() + 1))
    return _Zone(box, weight[box][..., None])


def _shade_mouth(animated: np.ndarray, change: np.ndarray, new_content: np.ndarray) -> np.ndarray:
    """`animated` (h, w, 3) shaded like a mouth's interior where content is new (`new_content` (h, w, 1), already
    limited to the mouth's zone) and the decoder's `change` (h, w, 3) darkens it (`_MOUTH_DARKENING`)."""
    start, full = _MOUTH_DARKENING
    darker = _smoothstep((-(change @ _LUMA) - start) / (full - start))[..., None]
    return animated * (1 - new_content * darker * (1 - _MOUTH_INTERIOR))


def _smoothstep(value: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth cubic ramp between (float32)."""
    ramp = np.clip(value, 0, 1)
    return (ramp * ramp * (3 - 2 * ramp)).astype(np.float32)
