"""Small shape helpers in face units (points are float arrays (N, 2), x right, y down)."""

from __future__ import annotations

import numpy as np

T = np.linspace(0.0, 1.0, 13)  # curve parameter shared by every open curve
BUMP = np.sin(np.pi * T)  # 0 at both ends, 1 in the middle
_ANGLES = np.linspace(0.0, 2 * np.pi, 28, endpoint=False)
_UNIT_CIRCLE = np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], -1)


def curve(start, end, middle_offset: float, profile: np.ndarray = BUMP) -> np.ndarray:
    """Points from start to end along a straight chord, pushed down (y) by `middle_offset * profile`."""
    points = np.empty((len(T), 2))
    points[:, 0] = start[0] + (end[0] - start[0]) * T
    points[:, 1] = start[1] + (end[1] - start[1]) * T + middle_offset * profile
    return points


def bezier(start, control, end, t: np.ndarray = T) -> np.ndarray:
    """Quadratic Bezier curve (len(t), 2)."""
    start, control, end = (np.asarray(p, float) for p in (start, control, end))
    t = t[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def through(start, middle, end, t: np.ndarray = T) -> np.ndarray:
    """Quadratic Bezier curve that passes through `middle` at t = 0.5."""
    control = 2 * np.asarray(middle, float) - (np.asarray(start, float) + np.asarray(end, float)) / 2
    return bezier(start, control, end, t)


def ellipse(centre, radius_x: float, radius_y: float) -> np.ndarray:
    """Closed ellipse polygon (28, 2)."""
    return _UNIT_CIRCLE * (radius_x, radius_y) + centre


def ribbon(spine: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Polygon of a stroke of varying width (N,) around the spine (N, 2)."""
    tangent = np.gradient(spine, axis=0)
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    offset = normal * (widths[:, None] / 2)
    return np.concatenate([spine + offset, (spine - offset)[::-1]])


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def shade(color, amount: float, towards=(0, 0, 0)):
    """`color` moved `amount` (0..1) of the way to `towards` (black by default), as an int RGB tuple."""
    return tuple(int(round(c * (1 - amount) + t * amount)) for c, t in zip(color, towards, strict=True))


def drop_jaw(points: np.ndarray, mouth_y: float, jaw: float) -> np.ndarray:
    """Moves points below the mouth down by `jaw` (face units), blending in around the mouth line."""
    if jaw <= 0:
        return points
    moved = points.copy()
    moved[:, 1] += jaw * smoothstep((points[:, 1] - (mouth_y - 0.02)) / 0.05)
    return moved
