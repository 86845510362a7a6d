"""SynthFace drawing: one head per frame with OpenCV polygons, anti-aliased, rendered large and area-downsampled.

Each frame copies the identity's cached static layer (background, shoulders, neck) and draws the head on it. Every
feature is a polygon or polyline in face units, moved by the facial actions and mapped to pixels by the head pose,
so all motion is sub-pixel smooth (fixed-point coordinates with `SHIFT` fractional bits).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from lfdm.data.synthface import features, head
from lfdm.data.synthface.appearance import Appearance
from lfdm.data.synthface.expressions import ACTIONS, animate, label_index, sample_video_params
from lfdm.data.synthface.geometry import CLOSED_LINE, DISC, FILL, ShapeList
from lfdm.data.synthface.identity import Identity, draw_body, pose_matrix, sample_identity, static_layer

SHIFT = 4  # fractional bits of the fixed-point pixel coordinates given to OpenCV
_ONE = 1 << SHIFT


class Painter(ShapeList):
    """Collects shapes given in face units, then draws them in order through a 2x3 affine map (face units ->
    pixels). Mapping every point of a frame with one matrix product keeps the per-shape cost to the OpenCV call."""

    def __init__(self, canvas: np.ndarray, matrix: np.ndarray, line_scale: float | None = None):
        super().__init__()
        self.canvas = canvas
        self._matrix = matrix
        self.scale = math.hypot(matrix[0, 0], matrix[1, 0])  # pixels per face unit
        # Line widths are whole pixels. Taking them from a fixed scale (the identity's rest pose) keeps a line from
        # flickering between two widths while the head breathes in and out by a fraction of a percent.
        self.line_scale = self.scale if line_scale is None else line_scale

    def flush(self) -> None:
        """Draws everything collected so far, in order, onto the canvas."""
        if not self.shapes:
            return
        points = np.concatenate([shape[1] for shape in self.shapes])
        pixels = np.rint(points @ (self._matrix[:, :2].T * _ONE) + self._matrix[:, 2] * _ONE).astype(np.int32)
        start = 0
        for kind, shape_points, color, width in self.shapes:
            shape = pixels[start : start + len(shape_points)]
            start += len(shape_points)
            if kind == FILL:
                cv2.fillPoly(self.canvas, [shape], color, cv2.LINE_AA, SHIFT)
            elif kind == DISC:
                centre = (int(shape[0, 0]), int(shape[0, 1]))
                cv2.circle(self.canvas, centre, int(width * self.scale * _ONE), color, -1, cv2.LINE_AA, SHIFT)
            else:
                thickness = max(1, int(round(width * self.line_scale)))
                cv2.polylines(self.canvas, [shape], kind == CLOSED_LINE, color, thickness, cv2.LINE_AA, SHIFT)
        self.shapes.clear()


def supersampling(resolution: int) -> int:
    """Drawing scale factor: frames are drawn at least 256 px (and 2x) large, then area-downsampled."""
    return max(2, math.ceil(256 / resolution))


def _winking_eye(act: dict, wink: float) -> dict:
    """The actions seen by the winking eye and its brow: the cheek pushes the lower lid up and the brow comes down,
    so the shut eye reads as a squeeze, not as a blink."""
    return act | {
        "cheek_raise": act["cheek_raise"] + 0.6 * wink,
        "brow_lower": act["brow_lower"] + 0.45 * wink,
        "eye_open": act["eye_open"] - 0.3 * wink,
    }


def draw_head(
    painter: Painter,
    identity: Identity,
    actions: np.ndarray,
    blink: float,
    gaze,
    side: int,
    wink: float = 0.0,
    wink_side: int = 1,
) -> None:
    """Draws the whole head of one frame. actions (len(ACTIONS),), blink in [0, 1] (both eyes), gaze (2,) in
    [-1, 1], wink in [0, 1]: closure of the eye on `wink_side` alone (-1 = image left)."""
    act = dict(zip(ACTIONS, actions.tolist(), strict=True))
    jaw = 0.065 * act["jaw_drop"] + 0.015 * act["mouth_open"]
    mouth = features.mouth_curves(identity, act, side, jaw)
    head.draw_hair_back(painter, identity)
    outline = head.draw_head_shape(painter, identity, jaw)
    head.draw_beard(painter, identity, outline, jaw)
    features.draw_cheeks(painter, identity, act, mouth)
    features.draw_nose(painter, identity, act)
    for eye_side in (-1, 1):
        if wink > 0 and eye_side == wink_side:
            eye_act, eye_blink = _winking_eye(act, wink), max(blink, wink)
        else:  # no wink: the very values the seven labels were always drawn with
            eye_act, eye_blink = act, blink
        features.draw_eye(painter, identity, eye_side, eye_act, eye_blink, gaze)
        features.draw_brow(painter, identity, eye_side, eye_act)
    features.draw_wrinkles(painter, identity, act)
    features.draw_mouth(painter, identity, mouth)
    head.draw_hair_front(painter, identity)
    head.draw_glasses(painter, identity)


def _check(resolution: int, num_frames: int) -> None:
    if resolution < 16:
        raise ValueError(f"`resolution` must be at least 16 px; got {resolution}.")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be at least 1; got {num_frames}.")


def render_frames(
    identity_seed: int,
    label: str,
    take: int,
    frame_indices=None,
    *,
    resolution: int = 64,
    num_frames: int = 32,
    appearance: Appearance | None = None,
) -> np.ndarray:
    """Some frames of video (identity, label, take) of `num_frames` frames: uint8 (len(frame_indices), H, W, 3).

    Rendering only the frames needed (two for an autoencoder training pair) is what makes on-the-fly data cheap.
    `frame_indices=None` renders all frames. `appearance` (`sample_appearance`) gives the video a photographic look;
    None draws SynthFace's flat one. Deterministic: the same arguments give the same pixels.
    """
    _check(resolution, num_frames)
    label_index(label)
    identity = sample_identity(identity_seed)
    params = sample_video_params(identity_seed, label, take)
    indices = np.arange(num_frames) if frame_indices is None else np.asarray(frame_indices, int).reshape(-1)
    if indices.size and (indices.min() < 0 or indices.max() >= num_frames):
        raise ValueError(f"frame indices must lie in [0, {num_frames}); got {indices.tolist()}.")
    states = animate(params, indices / max(num_frames - 1, 1))
    actions = states.actions if appearance is None else appearance.hold_expression(states.actions)
    size = resolution * supersampling(resolution)
    background = static_layer(identity, size)
    backdrop = None if appearance is None else appearance.backdrop_image(size)
    if backdrop is not None:
        draw_body(backdrop, identity)
        background = backdrop
    canvas = np.empty_like(background)
    rest = pose_matrix(identity, (0.0, 0.0, 0.0, 1.0), size)
    line_scale = math.hypot(rest[0, 0], rest[1, 0])
    frames = np.empty((len(indices), resolution, resolution, 3), np.uint8)
    for k in range(len(indices)):
        np.copyto(canvas, background)
        pose = pose_matrix(identity, states.pose[k], size)
        painter = Painter(canvas, pose, line_scale)
        wink = float(states.wink[k])
        draw_head(
            painter, identity, actions[k], float(states.blink[k]), states.gaze[k], params.side, wink, states.wink_side
        )
        painter.flush()
        if appearance is not None:
            appearance.shade_head(canvas, background, pose)
        frames[k] = cv2.resize(canvas, (resolution, resolution), interpolation=cv2.INTER_AREA)
    return frames if appearance is None else appearance.photograph(frames, indices)


def render_video(
    identity_seed: int, label: str, take: int, *, resolution: int = 64, num_frames: int = 32
) -> np.ndarray:
    """The SynthFace video (identity, label, take): uint8 (num_frames, resolution, resolution, 3), RGB.

    Frame 0 is the identity's neutral face for every label; deterministic from the arguments.
    """
    return render_frames(identity_seed, label, take, resolution=resolution, num_frames=num_frames)
