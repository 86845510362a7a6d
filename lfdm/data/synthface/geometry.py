"""Small shape helpers in face units (points are float arrays (N, 2), x right, y down)."""

from __future__ import annotations

from functools import lru_cache

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


def _bezier_basis(t: np.ndarray) -> np.ndarray:
    return np.stack([(1 - t) ** 2, 2 * (1 - t) * t, t**2], -1)


_BASIS = _bezier_basis(T)


def bezier(start, control, end, t: np.ndarray | None = None) -> np.ndarray:
    """Quadratic Bezier curve (len(t), 2), at `T` by default."""
    basis = _BASIS if t is None else _bezier_basis(t)
    return basis @ np.array([start, control, end], float)


def through(start, middle, end) -> np.ndarray:
    """Quadratic Bezier curve (13, 2) that passes through `middle` at t = 0.5."""
    control = (2 * middle[0] - (start[0] + end[0]) / 2, 2 * middle[1] - (start[1] + end[1]) / 2)
    return _BASIS @ np.array([start, control, end], float)


def ellipse(centre, radius_x: float, radius_y: float) -> np.ndarray:
    """Closed ellipse polygon (28, 2)."""
    return _UNIT_CIRCLE * (radius_x, radius_y) + centre


def ribbon(spine: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Polygon of a stroke of varying width (N,) around the spine (N, 2)."""
    tangent = np.empty_like(spine)
    tangent[1:-1] = spine[2:] - spine[:-2]
    tangent[0], tangent[-1] = spine[1] - spine[0], spine[-1] - spine[-2]
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], -1)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
    offset = normal * (widths[:, None] / 2)
    return np.concatenate([spine + offset, (spine - offset)[::-1]])


FILL, LINE, CLOSED_LINE, DISC = range(4)  # shape kinds


class ShapeList:
    """Records shapes in face units as (kind, points (N, 2), colour, width or radius) tuples, in drawing order."""

    def __init__(self):
        self.shapes: list[tuple[int, np.ndarray, tuple, float]] = []

    def fill(self, points: np.ndarray, color) -> None:
        """Filled polygon, points (N, 2)."""
        self.shapes.append((FILL, points, color, 0.0))

    def line(self, points: np.ndarray, color, width: float, closed: bool = False) -> None:
        """Polyline through points (N, 2); width in face units (drawn at least one pixel wide)."""
        self.shapes.append((CLOSED_LINE if closed else LINE, points, color, width))

    def circle(self, centre, radius: float, color) -> None:
        """Filled disc; centre (2,), radius in face units."""
        self.shapes.append((DISC, np.asarray(centre, float).reshape(1, 2), color, radius))

    def draw(self, shapes) -> None:
        """Adds recorded shapes (e.g. a cached `ShapeList.shapes`)."""
        self.shapes.extend(shapes)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


@lru_cache(maxsize=4096)
def shade(color: tuple, amount: float, towards: tuple = (0, 0, 0)) -> tuple:
    """`color` moved `amount` (0..1) of the way to `towards` (black by default), as an int RGB tuple."""
    return tuple(int(round(c * (1 - amount) + t * amount)) for c, t in zip(color, towards, strict=True))


def drop_jaw(points: np.ndarray, mouth_y: float, jaw: float) -> np.ndarray:
    """Moves points below the mouth down by `jaw` (face units), blending in around the mouth line."""
    if jaw <= 0:
        return points
    moved = points.copy()
    moved[:, 1] += jaw * smoothstep((points[:, 1] - (mouth_y - 0.02)) / 0.05)
    return moved
