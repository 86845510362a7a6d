"""SynthFace identities: everything about a person that does not move, drawn from one integer seed.

Geometry is in *face units*: fractions of the image side, measured from the head centre, y pointing down. The
renderer maps face units to pixels with the head pose (`Identity.base_pose` plus the per-frame motion), so one set of
numbers works at every resolution.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

Color = tuple[int, int, int]

HAIR_STYLES = ("short", "fringe", "long", "curly", "bun", "buzz", "bald")
# Bald is rare on purpose: hair frames the face and makes identities easy to tell apart.
_HAIR_STYLE_WEIGHTS = (0.2, 0.18, 0.22, 0.14, 0.1, 0.1, 0.06)
BACKGROUND_KINDS = ("solid", "gradient", "texture")
GLASSES_KINDS = ("round", "square")
BEARD_KINDS = ("stubble", "full", "goatee")

# Skin tones from light to dark; a tone is a random point on this polyline.
_SKIN_ANCHORS = np.array(
    [(252, 224, 200), (238, 196, 160), (214, 164, 122), (176, 120, 82), (132, 86, 56), (92, 60, 42)], float
)
_HAIR_COLORS = np.array(
    [
        (24, 20, 20),  # black
        (58, 38, 26),  # dark brown
        (104, 66, 38),  # brown
        (146, 70, 34),  # auburn
        (214, 178, 112),  # blond
        (150, 148, 146),  # grey
        (226, 224, 218),  # white
        (70, 90, 170),  # dyed blue
        (180, 70, 130),  # dyed pink
    ],
    float,
)
_HAIR_COLOR_WEIGHTS = np.array([0.22, 0.2, 0.16, 0.09, 0.12, 0.08, 0.05, 0.04, 0.04])
_IRIS_COLORS = np.array(
    [(70, 42, 24), (112, 70, 36), (120, 110, 54), (64, 120, 80), (60, 110, 170), (110, 126, 140)], float
)
_FRAME_COLORS = np.array([(24, 24, 28), (92, 56, 30), (170, 140, 70), (140, 30, 40), (40, 60, 120)], float)


@dataclass(frozen=True)
class Identity:
    """One SynthFace person. Lengths in face units (fractions of the image side), angles in degrees."""

    seed: int
    # background and clothes
    background_kind: str
    background_colors: tuple[Color, Color]
    background_angle: float
    shirt_color: Color
    # head pose offsets: (tilt degrees, dx, dy, scale factor); the head centre sits at (0.5 + dx, 0.5 + dy)
    base_pose: tuple[float, float, float, float]
    # head shape
    head_half_width: float
    head_top: float
    head_bottom: float
    jaw_power: float  # < 1 gives a square jaw, 1 an oval
    chin_taper: float
    skin: Color
    blush: float  # strength of the cheek colour, 0..1
    # hair
    hair_style: str
    hair_color: Color
    hairline: float  # y of the hairline at the forehead centre
    hair_length: float  # y where long hair ends
    fringe_tilt: float
    # eyes
    eye_y: float
    eye_spacing: float  # x of each eye centre from the face midline
    eye_half_width: float
    eye_upper: float  # neutral height of the upper lid above the eye line
    eye_lower: float  # neutral depth of the lower lid below the eye line
    eye_slant: float  # outer corner raised by this much
    eye_shape: float  # exponent of the upper lid's arc: about 0.55 round, 1.0 almond
    iris_radius: float
    iris_color: Color
    # brows
    brow_gap: float
    brow_thickness: float
    brow_arch: float
    brow_color: Color
    # nose
    nose_y: float
    nose_half_width: float
    # mouth
    mouth_y: float
    mouth_half_width: float
    upper_lip: float
    lower_lip: float
    lip_color: Color
    # extras
    glasses: str | None
    glasses_color: Color
    beard: str | None

    @property
    def name(self) -> str:
        """Folder name of this identity in a written data set."""
        return f"{self.seed:05d}"


def _color(values) -> Color:
    return tuple(int(v) for v in np.clip(np.rint(np.asarray(values, float)), 0, 255))


def _mix(a, b, t: float) -> Color:
    return _color(np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t)


def _skin_tone(rng: np.random.Generator) -> Color:
    position = rng.uniform(0, len(_SKIN_ANCHORS) - 1)
    low = int(position)
    high = min(low + 1, len(_SKIN_ANCHORS) - 1)
    tone = _SKIN_ANCHORS[low] * (1 - (position - low)) + _SKIN_ANCHORS[high] * (position - low)
    return _color(tone + rng.normal(0, 5, 3))


def _background_colors(rng: np.random.Generator) -> tuple[Color, Color]:
    """Two muted colours of random hue (HSV sampled, converted with OpenCV)."""
    hue = rng.uniform(0, 180)
    hsv = np.array(
        [
            [[hue, rng.uniform(20, 130), rng.uniform(110, 235)]],
            [[(hue + rng.uniform(-40, 40)) % 180, rng.uniform(20, 130), rng.uniform(70, 235)]],
        ],
        np.uint8,
    )
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return _color(rgb[0, 0]), _color(rgb[1, 0])


def _shirt_color(rng: np.random.Generator, background: tuple[Color, Color]) -> Color:
    """A clothes colour of random hue, darker than a light background or lighter than a dark one."""
    brightness = np.mean(background)
    value = rng.uniform(30, 110) if brightness > 140 else rng.uniform(160, 245)
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(30, 200), value]]], np.uint8)
    return _color(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def sample_identity(seed: int) -> Identity:
    """The identity with this seed (any non-negative int); the same seed always gives the same person."""
    if seed < 0:
        raise ValueError(f"identity seeds are non-negative integers; got {seed}.")
    rng = np.random.default_rng([seed, 0x1D])
    background = _background_colors(rng)
    skin = _skin_tone(rng)
    hair_color = _color(_HAIR_COLORS[rng.choice(len(_HAIR_COLORS), p=_HAIR_COLOR_WEIGHTS)] + rng.normal(0, 6, 3))
    hair_style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_HAIR_STYLE_WEIGHTS)]
    eye_half_width = rng.uniform(0.052, 0.064)
    eye_upper = rng.uniform(0.028, 0.036)
    eye_lower = rng.uniform(0.015, 0.021)
    mouth_half_width = rng.uniform(0.066, 0.088)
    beard = None
    if rng.random() < 0.22:
        beard = BEARD_KINDS[rng.integers(len(BEARD_KINDS))]
    glasses = GLASSES_KINDS[rng.integers(len(GLASSES_KINDS))] if rng.random() < 0.15 else None
    brow_darkening = rng.uniform(0.45, 0.8)
    return Identity(
        seed=int(seed),
        background_kind=BACKGROUND_KINDS[rng.integers(len(BACKGROUND_KINDS))],
        background_colors=background,
        background_angle=float(rng.uniform(0, 360)),
        shirt_color=_shirt_color(rng, background),
        base_pose=(
            float(rng.uniform(-6, 6)),
            float(rng.uniform(-0.03, 0.03)),
            float(rng.uniform(-0.03, 0.01)),
            float(rng.uniform(1.02, 1.16)),
        ),
        head_half_width=float(rng.uniform(0.235, 0.27)),
        head_top=float(rng.uniform(0.29, 0.33)),
        head_bottom=float(rng.uniform(0.3, 0.345)),
        jaw_power=float(rng.uniform(0.55, 1.0)),
        chin_taper=float(rng.uniform(0.05, 0.3)),
        skin=skin,
        blush=float(rng.uniform(0.03, 0.15)),
        hair_style=hair_style,
        hair_color=hair_color,
        hairline=float(rng.uniform(-0.2, -0.17)),
        hair_length=float(rng.uniform(0.18, 0.42)),
        fringe_tilt=float(rng.uniform(-0.25, 0.25)),
        eye_y=float(rng.uniform(-0.025, 0.005)),
        eye_spacing=float(rng.uniform(0.1, 0.118)),
        eye_half_width=float(eye_half_width),
        eye_upper=float(eye_upper),
        eye_lower=float(eye_lower),
        eye_slant=float(rng.uniform(-0.004, 0.008)),
        iris_radius=float(min(rng.uniform(0.021, 0.026), 0.8 * eye_upper + 0.6 * eye_lower)),
        iris_color=_color(_IRIS_COLORS[rng.integers(len(_IRIS_COLORS))] + rng.normal(0, 8, 3)),
        brow_gap=float(rng.uniform(0.022, 0.034)),
        brow_thickness=float(rng.uniform(0.015, 0.023)),
        brow_arch=float(rng.uniform(0.004, 0.016)),
        brow_color=_mix(hair_color, (20, 15, 15), brow_darkening if sum(hair_color) > 360 else 0.3),
        nose_y=float(rng.uniform(0.085, 0.11)),
        nose_half_width=float(rng.uniform(0.024, 0.034)),
        mouth_y=float(rng.uniform(0.185, 0.205)),
        mouth_half_width=float(mouth_half_width),
        upper_lip=float(rng.uniform(0.01, 0.017)),
        lower_lip=float(rng.uniform(0.013, 0.022)),
        lip_color=_mix(skin, (176, 58, 70), rng.uniform(0.3, 0.55)),
        glasses=glasses,
        glasses_color=_color(_FRAME_COLORS[rng.integers(len(_FRAME_COLORS))]),
        beard=beard,
        eye_shape=float(rng.uniform(0.55, 1.0)),  # drawn last: earlier draws keep their values
    )


def pose_matrix(identity: Identity, pose, size: int) -> np.ndarray:
    """2x3 affine map from face units to pixels of a `size` canvas.

    pose: (tilt degrees, dx, dy, scale factor), the motion added to `identity.base_pose` (scale multiplies). The
    head turns and scales about the neck, (0, 0.3) in face units, so the chin stays near the static neck.
    """
    base_tilt, base_dx, base_dy, base_scale = identity.base_pose
    tilt, dx, dy, scale = pose
    angle = np.deg2rad(base_tilt + tilt)
    factor = base_scale * scale * size
    cos, sin = np.cos(angle) * factor, np.sin(angle) * factor
    pivot_x, pivot_y = 0.0, 0.3
    centre_x = (0.5 + base_dx + dx) * size
    centre_y = (0.5 + base_dy + dy) * size
    # p -> centre + pivot*factor + R*S*(p - pivot)
    offset_x = centre_x + pivot_x * factor - (cos * pivot_x - sin * pivot_y)
    offset_y = centre_y + pivot_y * factor - (sin * pivot_x + cos * pivot_y)
    return np.array([[cos, -sin, offset_x], [sin, cos, offset_y]])


def _background(identity: Identity, size: int, rng: np.random.Generator) -> np.ndarray:
    """Solid, linear gradient or smooth texture; smooth parts are made at 32 px and upsampled (cheap)."""
    first = np.array(identity.background_colors[0], np.float32)
    second = np.array(identity.background_colors[1], np.float32)
    if identity.background_kind == "solid":
        return np.ascontiguousarray(np.broadcast_to(first.astype(np.uint8), (size, size, 3)))
    small = 32
    if identity.background_kind == "gradient":
        angle = np.deg2rad(identity.background_angle)
        axis = np.linspace(-0.5, 0.5, small, dtype=np.float32)
        weight = np.cos(angle) * axis[None, :] + np.sin(angle) * axis[:, None] + 0.5
    else:
        # smooth value noise: a coarse random grid, upsampled with bicubic interpolation
        coarse = rng.random((int(rng.integers(3, 7)),) * 2).astype(np.float32)
        weight = cv2.resize(coarse, (small, small), interpolation=cv2.INTER_CUBIC)
    weight = np.clip(weight, 0, 1)[..., None]
    image = (first * (1 - weight) + second * weight).astype(np.uint8)
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)


def _fill(canvas: np.ndarray, points: np.ndarray, color: Color, shift: int = 4) -> None:
    cv2.fillPoly(canvas, [np.round(points * (1 << shift)).astype(np.int32)], color, cv2.LINE_AA, shift)


# Shoulders around the neck point (0, 0.3), in face units: sloping from the neck to the image border.
_SHOULDERS = [
    (-1.3, 1.0),
    (-1.3, 0.36),
    (-0.6, 0.2),
    (-0.36, 0.13),
    (-0.16, 0.09),
    (0.16, 0.09),
    (0.36, 0.13),
    (0.6, 0.2),
    (1.3, 0.36),
    (1.3, 1.0),
]


@lru_cache(maxsize=64)
def static_layer(identity: Identity, size: int) -> np.ndarray:
    """The parts that never move, uint8 (size, size, 3): background, shoulders and neck (read-only, cached)."""
    rng = np.random.default_rng([identity.seed, size, 0xB6])
    canvas = np.ascontiguousarray(_background(identity, size, rng))
    draw_body(canvas, identity)
    canvas.setflags(write=False)
    return canvas


def draw_body(canvas: np.ndarray, identity: Identity) -> None:
    """Draws the shoulders and neck (the parts of the person that never move) onto a square canvas, in place."""
    size = canvas.shape[0]
    matrix = pose_matrix(identity, (0.0, 0.0, 0.0, 1.0), size)
    # Only position and scale of the base pose move the body; its tilt belongs to the head.
    scale = np.hypot(matrix[0, 0], matrix[1, 0])
    neck_x, neck_y = matrix @ np.array([0.0, 0.3, 1.0])

    def to_pixels(points):
        return np.array(points, float) * scale + (neck_x, neck_y)

    half = identity.head_half_width
    neck_color = _mix(identity.skin, (40, 20, 20), 0.2)
    _fill(canvas, to_pixels(_SHOULDERS), identity.shirt_color)
    neck = [(-0.5 * half, -0.25), (0.5 * half, -0.25), (0.52 * half, 0.05), (0.6 * half, 0.1)]
    neck += [(x * 0.6 * half, 0.1 + 0.06 * (1 - x * x)) for x in np.linspace(1, -1, 9)]
    neck += [(-0.6 * half, 0.1), (-0.52 * half, 0.05)]
    _fill(canvas, to_pixels(neck), neck_color)


def landmarks(identity: Identity, size: int, pose=(0.0, 0.0, 0.0, 1.0)) -> np.ndarray:
    """Where the face's fixed points are drawn: float (3, 2) pixel (x, y) of the image-left eye centre, the
    image-right eye centre and the mouth centre (at rest, before the actions move lids and lips) on a `size`
    canvas, for head `pose` (see `pose_matrix`; the default is the rest pose, as in a video's frame 0)."""
    points = np.array(
        [
            [-identity.eye_spacing, identity.eye_y, 1.0],
            [identity.eye_spacing, identity.eye_y, 1.0],
            [0.0, identity.mouth_y, 1.0],
        ]
    )
    return points @ pose_matrix(identity, pose, size).T
