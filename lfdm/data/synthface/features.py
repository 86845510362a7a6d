"""The moving parts of the face: eyes, brows, nose, cheeks, wrinkles and mouth, each shaped by the facial actions.

`act` is a dict {action name: value} (see `expressions.ACTIONS`). All lengths are face units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lfdm.data.synthface.geometry import BUMP, T, bezier, curve, ellipse, ribbon, shade, through
from lfdm.data.synthface.identity import Identity

_SCLERA = (246, 244, 238)
_DARK = (28, 20, 20)
_MOUTH_INSIDE = (84, 26, 34)
_TEETH = (240, 236, 224)
_LIP_PROFILE = BUMP**0.45
_CUPID = np.exp(-(((T - 0.5) / 0.07) ** 2))
_TEETH_PROFILE = BUMP**0.3


def draw_eye(painter, identity: Identity, side: int, act: dict, blink: float, gaze) -> None:
    """One eye (side -1 = image left). Eyelids are skin-coloured covers over a fully open eye."""
    half_width, upper, lower = identity.eye_half_width, identity.eye_upper, identity.eye_lower
    centre = np.array([side * identity.eye_spacing, identity.eye_y])
    inner = (centre[0] - side * half_width, centre[1])
    outer = (centre[0] + side * half_width, centre[1] - identity.eye_slant)
    opening = act["eye_open"]
    upper_height = upper * (1 + 1.0 * max(opening, 0) + 0.6 * min(opening, 0))
    lower_height = lower * (1 - 1.1 * act["cheek_raise"] - 0.4 * max(-opening, 0) + 0.3 * max(opening, 0))
    arc = BUMP**identity.eye_shape
    upper_lid = curve(inner, outer, -upper_height, arc)
    lower_lid = curve(inner, outer, lower_height)
    if blink > 0:
        upper_lid = upper_lid + (lower_lid - upper_lid) * blink
    widest_upper = curve(inner, outer, -upper * 2.2, arc)
    widest_lower = curve(inner, outer, lower * 1.45)
    painter.fill(np.concatenate([widest_upper, widest_lower[-2:0:-1]]), _SCLERA)

    iris_centre = centre + (gaze[0] * half_width * 0.35, upper * 0.12 + gaze[1] * upper * 0.3)
    radius = identity.iris_radius
    painter.circle(iris_centre, radius, identity.iris_color)
    painter.circle(iris_centre, radius * 0.48, _DARK)
    painter.circle(iris_centre + (-0.35 * radius, -0.4 * radius), radius * 0.22, (255, 255, 255))

    # covers: from the current lid out to beyond the widest eye
    painter.fill(np.concatenate([upper_lid, ((widest_upper - centre) * 1.35 + centre)[::-1]]), identity.skin)
    painter.fill(np.concatenate([lower_lid, ((widest_lower - centre) * 1.35 + centre)[::-1]]), identity.skin)
    crease = upper_lid[2:-2] + (0.0, -0.011)
    painter.line(crease, shade(identity.skin, 0.22), 0.004)
    painter.line(lower_lid[2:-2], shade(identity.skin, 0.18), 0.004)
    painter.line(upper_lid, _DARK, 0.01)


def draw_brow(painter, identity: Identity, side: int, act: dict) -> None:
    """One eyebrow: raised (inner/outer), lowered and knitted by the actions."""
    inner_raise, outer_raise = act["brow_inner_raise"], act["brow_outer_raise"]
    lower, knit = act["brow_lower"], act["brow_knit"]
    base = identity.eye_y - identity.eye_upper - identity.brow_gap
    spacing, half_width = identity.eye_spacing, identity.eye_half_width
    inner_dy = -0.068 * inner_raise + 0.042 * lower + 0.012 * knit * (1 - min(max(inner_raise, 0), 1))
    outer_dy = -0.056 * outer_raise + 0.018 * lower
    middle_dy = 0.5 * (inner_dy + outer_dy) - 0.018 * max(outer_raise, 0) * max(inner_raise, 0)
    inner = (side * (spacing - half_width * 0.95 - 0.024 * knit), base + inner_dy)
    middle = (side * (spacing + half_width * 0.2), base - identity.brow_arch + middle_dy)
    outer = (side * (spacing + half_width * 1.2), base + 0.006 - identity.eye_slant + outer_dy)
    spine = through(inner, middle, outer)
    widths = identity.brow_thickness * (1.2 - 0.65 * T)
    painter.fill(ribbon(spine, widths), identity.brow_color)


def draw_nose(painter, identity: Identity, act: dict) -> None:
    """Nose wings and nostrils; a wrinkled nose pulls them up and wider."""
    wrinkle = act["nose_wrinkle"]
    tip_y = identity.nose_y - 0.012 * wrinkle - 0.006 * act["upper_lip_raise"]
    width = identity.nose_half_width * (1 + 0.25 * wrinkle)
    line_color = shade(identity.skin, 0.3)
    for side in (-1, 1):
        wing = through(
            (side * width * 0.55, tip_y - 0.032),
            (side * width * 1.05, tip_y - 0.002),
            (side * width * 0.62, tip_y + 0.012),
        )
        painter.line(wing, line_color, 0.005)
        painter.fill(ellipse((side * width * 0.42, tip_y + 0.007), 0.0095, 0.005), shade(identity.skin, 0.62))
    bridge = through((0.014, identity.eye_y + 0.02), (0.02, tip_y - 0.035), (0.014, tip_y - 0.05))
    painter.line(bridge, shade(identity.skin, 0.1), 0.004)


@dataclass(frozen=True)
class MouthCurves:
    """Lip curves, each (13, 2) from the image-left corner to the right one."""

    upper_outer: np.ndarray
    upper_inner: np.ndarray
    lower_inner: np.ndarray
    lower_outer: np.ndarray
    open_gap: float  # largest distance between the inner curves
    lower_teeth: float  # visible height of the lower teeth


def mouth_curves(identity: Identity, act: dict, side: int, jaw: float) -> MouthCurves:
    """Mouth shape for the actions; `jaw` is the chin drop in face units; `side` picks the raised side."""
    up, down, press = act["mouth_corner_up"], act["mouth_corner_down"], act["lip_press"]
    opening, stretch, raise_ = act["mouth_open"], act["mouth_stretch"], act["upper_lip_raise"]
    mouth_y = identity.mouth_y
    width = max(identity.mouth_half_width * (1 + 0.34 * stretch + 0.15 * up - 0.2 * press), 0.03)
    corner_y = mouth_y - 0.04 * up + 0.034 * down + 0.3 * jaw
    tilt = 0.01 * raise_ * side  # disgust: the raised side's corner goes up
    left, right = (-width, corner_y + tilt), (width, corner_y - tilt)
    chord_y = corner_y

    upper_mid = mouth_y - 0.006 * opening - 0.004 * max(stretch, 0) * opening + 0.003 * press
    upper_inner = curve(left, right, upper_mid - chord_y, BUMP**0.6)
    asymmetry = 1 + 0.75 * side * (2 * T - 1)
    upper_inner[:, 1] -= 0.024 * raise_ * BUMP**0.5 * asymmetry
    grin = 0.022 * up * min(1.0, opening * 3)  # an open smile drops the lower lip into a crescent
    lower_mid = mouth_y + 0.04 * opening + grin + jaw
    lower_inner = curve(left, right, lower_mid - chord_y, BUMP**0.7)
    lower_inner[:, 1] = np.maximum(lower_inner[:, 1], upper_inner[:, 1])

    thin = 1 - 0.65 * press
    upper_outer = upper_inner.copy()
    upper_outer[:, 1] -= identity.upper_lip * thin * (_LIP_PROFILE - 0.28 * _CUPID)
    lower_outer = lower_inner.copy()
    lower_outer[:, 1] += identity.lower_lip * thin * (1 + 0.3 * down) * BUMP**0.55
    return MouthCurves(
        upper_outer=upper_outer,
        upper_inner=upper_inner,
        lower_inner=lower_inner,
        lower_outer=lower_outer,
        open_gap=float(np.max(lower_inner[:, 1] - upper_inner[:, 1])),
        lower_teeth=0.012 * max(stretch, 0) * min(1.0, opening * 3),
    )


def draw_mouth(painter, identity: Identity, mouth: MouthCurves) -> None:
    """Lips, the lip line, and when open the dark inside with teeth; a moustache for bearded identities."""
    painter.fill(np.concatenate([mouth.lower_inner, mouth.lower_outer[::-1]]), identity.lip_color)
    painter.fill(np.concatenate([mouth.upper_outer, mouth.upper_inner[::-1]]), shade(identity.lip_color, 0.14))
    painter.line(mouth.upper_inner, shade(identity.lip_color, 0.55), 0.006)
    if mouth.open_gap > 0.003:
        inside = np.concatenate([mouth.upper_inner, mouth.lower_inner[::-1]])
        painter.fill(inside, _MOUTH_INSIDE)
        teeth = mouth.upper_inner.copy()
        teeth[:, 1] = np.minimum(teeth[:, 1] + 0.02 * _TEETH_PROFILE, mouth.lower_inner[:, 1])
        painter.fill(np.concatenate([mouth.upper_inner, teeth[::-1]]), _TEETH)
        if mouth.lower_teeth > 0.002:
            bottom = mouth.lower_inner.copy()
            bottom[:, 1] = np.maximum(bottom[:, 1] - mouth.lower_teeth * _TEETH_PROFILE, teeth[:, 1])
            painter.fill(np.concatenate([bottom, mouth.lower_inner[::-1]]), _TEETH)
    if identity.beard in ("full", "goatee"):
        top = mouth.upper_outer * (1.12, 1.0) + (0.0, -0.02)
        bottom = mouth.upper_outer * (1.15, 1.0) + (0.0, -0.002)
        painter.fill(np.concatenate([top, bottom[::-1]]), identity.hair_color)


def draw_cheeks(painter, identity: Identity, act: dict, mouth: MouthCurves) -> None:
    """Cheek colour and the folds from nose to mouth corners; both rise and deepen with a smile."""
    cheek = act["cheek_raise"]
    fold = np.clip(
        cheek
        + 0.6 * act["mouth_corner_up"]
        + 0.7 * act["upper_lip_raise"]
        + 0.4 * max(act["mouth_stretch"], 0)
        + 0.3 * act["mouth_corner_down"],
        0,
        1,
    )
    blush = shade(identity.skin, identity.blush, (236, 96, 110))
    fold_color = shade(identity.skin, 0.2 + 0.08 * fold)
    nose_y, nose_w = identity.nose_y - 0.012 * act["nose_wrinkle"], identity.nose_half_width
    for side, corner in ((-1, mouth.upper_inner[0]), (1, mouth.upper_inner[-1])):
        centre = (side * (identity.eye_spacing + 0.012), identity.eye_y + 0.088 - 0.03 * cheek)
        painter.fill(ellipse(centre, 0.036 * (1 + 0.1 * cheek), 0.021 * (1 + 0.2 * cheek)), blush)
        start = (side * (nose_w + 0.012), nose_y - 0.012)
        end = (corner[0] + side * 0.016, corner[1] + 0.006)
        control = (side * (abs(corner[0]) + 0.035 + 0.01 * cheek), (start[1] + end[1]) / 2 - 0.01)
        length = 0.4 + 0.6 * fold
        painter.line(bezier(start, control, end, T * length), fold_color, 0.0055)


def draw_wrinkles(painter, identity: Identity, act: dict) -> None:
    """Frown lines between knitted brows and creases on a wrinkled nose; absent at rest."""
    knit, wrinkle = act["brow_knit"], act["nose_wrinkle"]
    color = shade(identity.skin, 0.28)
    if knit > 0.15:
        top = identity.eye_y - identity.eye_upper - identity.brow_gap + 0.01
        for x in (-0.011, 0.011):
            painter.line(np.array([(x, top), (x * 1.3, top + 0.032 * knit)]), color, 0.0045)
    if wrinkle > 0.15:
        y = identity.eye_y + 0.03
        for row in range(2):
            arc = through(
                (-0.022 * wrinkle, y + row * 0.012), (0.0, y + row * 0.012 - 0.004), (0.022 * wrinkle, y + row * 0.012)
            )
            painter.line(arc, color, 0.004)
