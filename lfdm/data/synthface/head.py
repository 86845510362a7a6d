"""The head's frame: hair (behind and in front), head shape with ears, beard and glasses."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from lfdm.data.synthface.geometry import ShapeList, drop_jaw, ellipse, shade, through
from lfdm.data.synthface.identity import Identity

_THETA = np.linspace(0.0, 2 * np.pi, 48, endpoint=False)
_COS, _SIN = np.cos(_THETA), np.sin(_THETA)
_TOP = np.linspace(np.pi, 2 * np.pi, 21)  # left -> over the top -> right
_TOP_COS, _TOP_SIN = np.cos(_TOP), np.sin(_TOP)
_HAIRLINE_X = np.linspace(1.0, -1.0, 17)  # right -> left, as a fraction of the hairline half width


def head_outline(identity: Identity, jaw: float) -> np.ndarray:
    """Head polygon (48, 2): an ellipse on top, a jaw of variable squareness and chin taper below."""
    return drop_jaw(_rest_outline(identity), identity.mouth_y, jaw)


@lru_cache(maxsize=256)
def _rest_outline(identity: Identity) -> np.ndarray:
    a = identity.head_half_width
    lower = _SIN > 0
    x_lower = a * np.sign(_COS) * np.abs(_COS) ** identity.jaw_power * (1 - identity.chin_taper * _SIN**2)
    points = np.empty((len(_THETA), 2))
    points[:, 0] = np.where(lower, x_lower, a * _COS)
    points[:, 1] = np.where(lower, identity.head_bottom * _SIN, identity.head_top * _SIN)
    return points


def draw_head_shape(painter, identity: Identity, jaw: float) -> np.ndarray:
    """Ears, then the head with a darker rim for shading. Returns the outline (48, 2)."""
    painter.draw(_ears(identity))
    outline = head_outline(identity, jaw)
    painter.fill(outline, shade(identity.skin, 0.13))
    painter.fill(outline * 0.93 + (-0.008, -0.012), identity.skin)
    return outline


@lru_cache(maxsize=256)
def _ears(identity: Identity) -> list:
    shapes = ShapeList()
    rim = shade(identity.skin, 0.13)
    for side in (-1, 1):
        centre = (side * identity.head_half_width * 0.98, identity.eye_y + 0.04)
        shapes.fill(ellipse(centre, 0.032, 0.052), rim)
        inner = through(
            (centre[0] + side * 0.004, centre[1] - 0.03),
            (centre[0] + side * 0.016, centre[1]),
            (centre[0] + side * 0.002, centre[1] + 0.03),
        )
        shapes.line(inner, shade(identity.skin, 0.3), 0.006)
    return shapes.shapes


def _hair_cap(identity: Identity, width: float, height: float, side_y: float) -> np.ndarray:
    """Outer edge of the hair: down the left side, over the top, down the right side (left to right)."""
    a, top = identity.head_half_width, identity.head_top
    arc = np.stack([a * width * _TOP_COS, top * height * _TOP_SIN], -1)
    return np.concatenate([[(-a * (width - 0.03), side_y)], arc, [(a * (width - 0.03), side_y)]])


def _hairline(identity: Identity, centre_y: float, side_y: float, wave: float = 0.0, teeth: int = 0) -> np.ndarray:
    """Hairline from right to left: `centre_y` on the forehead, falling to `side_y` at the temples."""
    a = identity.head_half_width * 0.98
    x = _HAIRLINE_X * a
    y = centre_y + (side_y - centre_y) * np.abs(_HAIRLINE_X) ** 2.5
    if teeth:  # fringe: a zig-zag, tilted to one side
        y = y + identity.fringe_tilt * x + wave * (np.arange(len(x)) % 2) * (np.abs(_HAIRLINE_X) < 0.85)
    elif wave:
        y = y + wave * np.cos(_HAIRLINE_X * np.pi * 4)
    return np.stack([x, y], -1)


def draw_hair_back(painter, identity: Identity) -> None:
    """Hair behind the head: long hair, curly volume, a bun."""
    painter.draw(_hair_back(identity))


@lru_cache(maxsize=256)
def _hair_back(identity: Identity) -> list:
    painter = ShapeList()
    a, top = identity.head_half_width, identity.head_top
    color = shade(identity.hair_color, 0.18)
    style = identity.hair_style
    if style == "long":
        length = identity.hair_length
        arc = np.stack([a * 1.13 * _TOP_COS, top * 1.12 * _TOP_SIN], -1)
        body = [
            (a * 1.17, 0.05),
            (a * 1.24, length),
            (a * 0.55, length + 0.025),
            (-a * 0.55, length + 0.025),
            (-a * 1.24, length),
            (-a * 1.17, 0.05),
        ]
        painter.fill(np.concatenate([arc, body]), color)
    elif style == "curly":
        radius = 1 + 0.05 * np.cos(_THETA * 11)
        points = np.stack([a * 1.3 * radius * _COS, -0.05 + top * 1.12 * radius * _SIN], -1)
        painter.fill(points, color)
    elif style == "bun":
        painter.circle((0.0, -top * 1.12), 0.075, color)
    return painter.shapes


def draw_hair_front(painter, identity: Identity) -> None:
    """Hair over the forehead and temples (drawn after the face)."""
    painter.draw(_hair_front(identity))


@lru_cache(maxsize=256)
def _hair_front(identity: Identity) -> list:
    painter = ShapeList()
    style = identity.hair_style
    if style == "bald":
        return painter.shapes
    a = identity.head_half_width
    side_y = identity.eye_y - 0.015
    hairline = identity.hairline
    color = identity.hair_color
    if style == "buzz":
        cap, line = _hair_cap(identity, 1.015, 1.03, side_y), _hairline(identity, hairline - 0.01, side_y)
        color = shade(identity.skin, 0.55, identity.hair_color)
    elif style == "fringe":
        cap, line = _hair_cap(identity, 1.07, 1.1, side_y), _hairline(identity, hairline + 0.012, side_y, 0.012, 8)
    elif style == "curly":
        cap, line = _hair_cap(identity, 1.1, 1.12, side_y), _hairline(identity, hairline, side_y, 0.008)
    else:
        cap, line = _hair_cap(identity, 1.07, 1.1, side_y), _hairline(identity, hairline, side_y)
    if style == "long":  # a centre parting
        line[:, 1] -= 0.03 * np.clip(1 - np.abs(line[:, 0]) / 0.05, 0, 1)
    painter.fill(np.concatenate([cap, line]), color)
    if style == "long":  # strands falling in front of the ears
        for side in (-1, 1):
            strand = [
                (side * a * 0.84, side_y - 0.06),
                (side * a * 1.12, side_y - 0.05),
                (side * a * 1.2, identity.hair_length),
                (side * a * 0.97, identity.hair_length - 0.02),
                (side * a * 0.9, 0.12),
            ]
            painter.fill(np.array(strand), color)
    return painter.shapes


def draw_beard(painter, identity: Identity, outline: np.ndarray, jaw: float) -> None:
    """Stubble or a full beard over the lower face (the mouth is drawn on top), or a goatee."""
    if identity.beard is None:
        return
    a, nose_y, mouth_y = identity.head_half_width, identity.nose_y, identity.mouth_y
    color = identity.hair_color
    if identity.beard == "goatee":
        chin = (0.0, (mouth_y + identity.head_bottom) / 2 + 0.01)
        points = ellipse(chin, identity.mouth_half_width * 0.75, (identity.head_bottom - mouth_y) / 2)
        painter.fill(drop_jaw(points, mouth_y, jaw), color)
        return
    if identity.beard == "stubble":
        color = shade(identity.skin, 0.35, identity.hair_color)
    lower = outline[(_SIN > 0) & (outline[:, 1] > nose_y - 0.03)]  # right -> chin -> left
    nose_w = identity.nose_half_width
    inner = [
        (-a * 0.62, nose_y + 0.03),
        (-nose_w * 1.3, nose_y + 0.018),
        (0.0, nose_y + 0.022),
        (nose_w * 1.3, nose_y + 0.018),
        (a * 0.62, nose_y + 0.03),
    ]
    painter.fill(np.concatenate([lower, inner]), color)


def draw_glasses(painter, identity: Identity) -> None:
    """Round or square frames with a bridge and temple arms."""
    if identity.glasses is not None:
        painter.draw(_glasses(identity))


@lru_cache(maxsize=256)
def _glasses(identity: Identity) -> list:
    painter = ShapeList()
    color, width = identity.glasses_color, 0.0065
    radius_x = identity.eye_half_width * 1.35
    radius_y = identity.eye_half_width * (1.1 if identity.glasses == "round" else 0.95)
    centre_y = identity.eye_y + 0.004
    for side in (-1, 1):
        centre = (side * identity.eye_spacing, centre_y)
        frame = ellipse(centre, radius_x, radius_y)
        if identity.glasses == "square":  # a superellipse: |x|^4 + |y|^4 = 1
            unit = (frame - centre) / (radius_x, radius_y)
            frame = np.sign(unit) * np.abs(unit) ** 0.5 * (radius_x, radius_y) + centre
        painter.line(frame, color, width, closed=True)
        arm_start = (side * (identity.eye_spacing + radius_x), centre_y - radius_y * 0.4)
        painter.line(np.array([arm_start, (side * identity.head_half_width * 1.0, centre_y - 0.01)]), color, width)
    inner = identity.eye_spacing - radius_x
    bridge = through(
        (-inner, centre_y - radius_y * 0.3), (0.0, centre_y - radius_y * 0.55), (inner, centre_y - radius_y * 0.3)
    )
    painter.line(bridge, color, width)
    return painter.shapes
