"""Pictures of latent flows and occlusion maps, and the one set of picture layouts: side-by-side panels
(`panel_strip`, `panel_grid`), tile grids (`tile_grid`) and captioned rows (`captioned_rows`, `caption_tile`).

Every function takes numpy arrays or CPU torch tensors and returns numpy uint8 RGB images (..., H, W, 3).
A flow is an absolute backward sampling grid (..., h, w, 2) in [-1, 1], x first (see `lfdm.latents`): pixel (i, j)
of the output samples the input at `grid[i, j]`. Its picture shows the displacement `grid - resting_grid`: the
motion as the LFAE's warp (`grid_sample`, align_corners=False) sees it, so a still image is white.

Colour coding follows the Middlebury optical-flow benchmark (Baker et al., "A Database and Evaluation Methodology
for Optical Flow", IJCV 2011): the hue gives the direction, the saturation the length (white = no motion).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from lfdm.latents import resting_grid

logger = logging.getLogger(__name__)

# Colour-wheel segments (number of hues between primaries) from Baker et al.:
# red-yellow, yellow-green, green-cyan, cyan-blue, blue-magenta, magenta-red.
_WHEEL_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
GRID_COLOR = (31, 119, 180)  # matplotlib's "C0", the colour of the official grid plots
LATTICE_COLOR = (215, 215, 215)
_INTERPOLATIONS = {"nearest": cv2.INTER_NEAREST, "bicubic": cv2.INTER_CUBIC}


def _to_numpy(array) -> np.ndarray:
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().float().numpy()
    return np.asarray(array)


def make_color_wheel() -> np.ndarray:
    """The Middlebury colour wheel: float (55, 3) RGB in [0, 1], hues in order of increasing angle."""
    segments = []
    for index, (_, length) in enumerate(_WHEEL_SEGMENTS):
        ramp = np.floor(255 * np.arange(length) / length)  # 0 -> 255 over the segment, integer steps
        primary = index // 2  # R, R, G, G, B, B
        segment = np.zeros((length, 3))
        if index % 2 == 0:  # RY, GC, BM: the primary stays full, the next one rises
            segment[:, primary] = 255
            segment[:, (primary + 1) % 3] = ramp
        else:  # YG, CB, MR: the primary falls, the next one stays full
            segment[:, primary] = 255 - ramp
            segment[:, (primary + 1) % 3] = 255
        segments.append(segment)
    return np.concatenate(segments) / 255


def _displacement_to_color(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised displacement u (right), v (down), radius 1 = full colour -> uint8 (..., 3)."""
    wheel = make_color_wheel()
    num_colors = len(wheel)
    radius = np.sqrt(u**2 + v**2)
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]
    position = (angle + 1) / 2 * (num_colors - 1)
    lower = np.floor(position).astype(np.int64)
    upper = (lower + 1) % num_colors
    fraction = (position - lower)[..., None]
    color = (1 - fraction) * wheel[lower] + fraction * wheel[upper]
    radius = radius[..., None]
    inside = radius <= 1 + 1e-5  # float32 grids put the longest displacement a hair beyond the rim
    radius = np.minimum(radius, 1)
    # Inside the unit circle saturation grows with the radius; beyond it (longer than the normaliser) it darkens.
    color = np.where(inside, 1 - radius * (1 - color), color * 0.75)
    return np.round(color * 255).clip(0, 255).astype(np.uint8)


def _displacements(flows) -> np.ndarray:
    flows = _to_numpy(flows).astype(np.float64)
    if flows.ndim < 3 or flows.shape[-1] != 2:
        raise ValueError(f"`flows` must be sampling grids (..., h, w, 2); got shape {flows.shape}.")
    height, width = flows.shape[-3:-1]
    return flows - resting_grid(height, width).double().numpy()


def flow_magnitude_max(flows) -> float:
    """The longest displacement (in grid units, [-1, 1] = image width) over all grids (..., h, w, 2) passed.

    Pass it as `max_magnitude` to `flow_to_color` so that several sequences (or sampling steps) share one scale.
    """
    displacement = _displacements(flows)
    return float(np.sqrt((displacement**2).sum(-1)).max())


def flow_to_color(flows, max_magnitude: float | None = None) -> np.ndarray:
    """Colour-code absolute sampling grids with the Middlebury wheel.

    Args:
        flows: (..., h, w, 2) absolute grids in [-1, 1], x first; all leading axes (frames, sampling steps) share
            one normaliser, so a sequence does not flicker.
        max_magnitude: the displacement length drawn at full saturation; default: the longest one in `flows`.
            Longer displacements are drawn darker.

    Returns:
        uint8 (..., h, w, 3); zero displacement is white.
    """
    displacement = _displacements(flows)
    if max_magnitude is None:
        max_magnitude = float(np.sqrt((displacement**2).sum(-1)).max())
    if max_magnitude < 0:
        raise ValueError(f"`max_magnitude` must be >= 0; got {max_magnitude}.")
    scale = max(max_magnitude, 1e-8)  # an all-identity flow is white, not NaN
    return _displacement_to_color(displacement[..., 0] / scale, displacement[..., 1] / scale)


def color_wheel_legend(size: int = 128) -> np.ndarray:
    """The colour key: uint8 (size, size, 3), a disc whose colour at each point is the colour of a displacement
    from the centre to that point (rim = `max_magnitude`), white outside the disc."""
    coordinates = np.linspace(-1, 1, size)
    v, u = np.meshgrid(coordinates, coordinates, indexing="ij")
    legend = _displacement_to_color(u, v)
    legend[u**2 + v**2 > 1] = 255
    return legend


def _grid_to_pixels(points: np.ndarray, size: int, margin: float) -> np.ndarray:
    """Grid coordinates in [-1, 1] -> fixed-point pixel coordinates (4 fractional bits) for cv2 drawing."""
    pixels = margin + (points + 1) / 2 * (size - 1 - 2 * margin)
    return np.round(pixels * 16).astype(np.int32)


def _lattice_steps(count: int, step: int) -> list[int]:
    """Every `step`-th index of `count`, always ending with the last one."""
    indices = list(range(0, count, step))
    return indices if indices[-1] == count - 1 else [*indices, count - 1]


def _draw_lattice(image: np.ndarray, grid: np.ndarray, step: int, color, margin: float, thickness: int) -> None:
    """Polylines through the rows and the columns of `grid` (h, w, 2), drawn into `image` in place."""
    size = image.shape[0]
    rows = [grid[i] for i in _lattice_steps(grid.shape[0], step)]
    columns = [grid[:, j] for j in _lattice_steps(grid.shape[1], step)]
    lines = [_grid_to_pixels(line, size, margin) for line in rows + columns]
    cv2.polylines(image, lines, isClosed=False, color=color, thickness=thickness, lineType=cv2.LINE_AA, shift=4)


def draw_grid(flow, size: int = 128, *, step: int = 1, thickness: int = 1, lattice: bool = True) -> np.ndarray:
    """Draw the warped lattice of a sampling grid, in image orientation (y down).

    Row i of the grid becomes a polyline through the points `flow[i, :]`, column j one through `flow[:, j]`, over
    a faint identity lattice, on white. (The official `grid2fig` plots with the y axis up, so its pictures are
    upside down relative to the frames; this one is not.)

    Args:
        flow: (h, w, 2) absolute grid in [-1, 1], x first, or (F, h, w, 2) for a sequence.
        size: output side in pixels.
        step: draw every `step`-th row and column (the last ones always).
        thickness: line width in pixels.
        lattice: draw the identity lattice underneath.

    Returns:
        uint8 (size, size, 3), or (F, size, size, 3) for a sequence.
    """
    grid = _to_numpy(flow).astype(np.float64)
    if grid.ndim == 4:
        return np.stack([draw_grid(frame, size, step=step, thickness=thickness, lattice=lattice) for frame in grid])
    if grid.ndim != 3 or grid.shape[-1] != 2:
        raise ValueError(f"`flow` must be (h, w, 2) or (F, h, w, 2); got shape {grid.shape}.")
    if step < 1:
        raise ValueError(f"`step` must be >= 1; got {step}.")
    margin = max(1.0, size / 64)  # keep the border lines of the identity lattice inside the picture
    image = np.full((size, size, 3), 255, np.uint8)
    if lattice:
        identity = resting_grid(*grid.shape[:2]).double().numpy()
        _draw_lattice(image, identity, step, LATTICE_COLOR, margin, 1)
    _draw_lattice(image, grid, step, GRID_COLOR, margin, thickness)
    return image


def _resize(images: np.ndarray, height: int, width: int, interpolation: str) -> np.ndarray:
    """Resize (N, H, W, C) uint8 images to (N, height, width, C)."""
    if interpolation not in _INTERPOLATIONS:
        raise ValueError(f"`interpolation` must be one of {sorted(_INTERPOLATIONS)}; got {interpolation!r}.")
    if images.shape[1:3] == (height, width):
        return images
    flag = _INTERPOLATIONS[interpolation]
    resized = [cv2.resize(image, (width, height), interpolation=flag) for image in images]
    return np.stack([r.reshape(height, width, -1) for r in resized])


def occlusion_to_image(occlusion, size: int | None = None, *, interpolation: str = "nearest") -> np.ndarray:
    """Occlusion maps as grayscale pictures (white = visible, black = occluded).

    Args:
        occlusion: (..., h, w) in [0, 1].
        size: output side in pixels (square); None keeps (h, w).
        interpolation: "nearest" (shows the latent cells, like the official `conf2fig`) or "bicubic".

    Returns:
        uint8 (..., size, size, 3), the gray value repeated in R, G, B.
    """
    maps = _to_numpy(occlusion).astype(np.float64)
    if maps.ndim < 2:
        raise ValueError(f"`occlusion` must be (..., h, w); got shape {maps.shape}.")
    gray = np.round(maps.clip(0, 1) * 255).astype(np.uint8)
    leading, (height, width) = gray.shape[:-2], gray.shape[-2:]
    flat = gray.reshape(-1, height, width, 1)
    if size is not None:
        flat = _resize(flat, size, size, interpolation)
    out = np.repeat(flat, 3, axis=-1)
    return out.reshape(*leading, *out.shape[1:])


def to_uint8(images) -> np.ndarray:
    """Float images in [0, 1] (numpy or torch, any shape) -> uint8, rounded; values outside [0, 1] are clipped."""
    return np.round(np.clip(_to_numpy(images), 0, 1) * 255).astype(np.uint8)


def _as_frames(frames, caption: str) -> np.ndarray:
    """numpy/torch (F, H, W, 3) or (H, W, 3), uint8 or float in [0, 1] -> uint8 (F, H, W, 3)."""
    array = _to_numpy(frames)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise ValueError(f"Column {caption!r} must be (F, H, W, 3) or (H, W, 3); got shape {array.shape}.")
    if array.dtype != np.uint8:
        array = to_uint8(array)
    if array.shape[-1] == 1:
        array = np.repeat(array, 3, axis=-1)
    return array


def caption_tile(text: str, width: int, height: int, *, font_scale: float | None = None) -> np.ndarray:
    """A white uint8 (height, width, 3) tile with `text` centred in black; `font_scale` defaults to height / 40, and
    long text shrinks to fit."""
    bar = np.full((height, width, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = font_scale or height / 40
    (text_width, text_height), baseline = cv2.getTextSize(text, font, scale, 1)
    if text_width > width - 4:  # shrink long captions to fit the tile
        scale *= (width - 4) / text_width
        (text_width, text_height), baseline = cv2.getTextSize(text, font, scale, 1)
    top = (height - text_height - baseline) // 2  # centre the glyphs including descenders
    cv2.putText(bar, text, ((width - text_width) // 2, top + text_height), font, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return bar


def tile_grid(tiles, *, columns: int | None = None, gap: int = 2) -> np.ndarray:
    """Tiles (N, H, W, 3) (uint8, or float in [0, 1]) -> one uint8 picture, left to right in rows of `columns`
    (default: one row), `gap` white pixels between them."""
    tiles = _as_frames(tiles, "tiles")
    count, height, width = tiles.shape[:3]
    columns = min(columns or count, count)
    rows = -(-count // columns)
    grid = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for index, tile in enumerate(tiles):
        top, left = (index // columns) * (height + gap), (index % columns) * (width + gap)
        grid[top : top + height, left : left + width] = tile
    return grid


def captioned_rows(
    rows: Sequence[tuple[str, np.ndarray]], *, caption_width: int, gap: int = 2, **caption
) -> np.ndarray:
    """Pictures uint8 (H_i, W, 3) stacked top to bottom, each with its caption in a white column on its left
    (`caption`: `caption_tile` options), `gap` white pixels between rows."""
    blocks = []
    for index, (text, picture) in enumerate(rows):
        label = caption_tile(text, caption_width, picture.shape[0], **caption)
        blocks.append(np.concatenate([label, picture], axis=1))
        if gap and index < len(rows) - 1:
            blocks.append(np.full((gap, blocks[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(blocks, axis=0)


def panel_strip(
    columns: Mapping[str, object] | Sequence[tuple[str, object]],
    *,
    scale: float = 1.0,
    interpolation: str = "nearest",
    caption_height: int | None = None,
    gap: int = 2,
) -> np.ndarray:
    """Put sequences side by side with a caption above each, e.g. `input | generated | warped input | flow | grid
    | occlusion`.

    Args:
        columns: caption -> frames, as a dict or a list of (caption, frames) pairs. Frames are (F, H, W, 3) or a
            single (H, W, 3) image shown in every frame, uint8 or float in [0, 1], numpy or CPU torch. All
            columns must have the same F (or 1).
        scale: every tile is resized to `scale` times the tallest column's height (width keeps each column's
            aspect ratio), so a 32 px flow sits beside a 128 px frame at the same size.
        interpolation: "nearest" (crisp latent cells) or "bicubic" (smooth).
        caption_height: height of the caption bar in pixels; default 1/8 of the tile height, at least 12.
        gap: white pixels between tiles.

    Returns:
        uint8 (F, caption_height + tile height, total width, 3).
    """
    captions, frames = _panel(columns, scale, interpolation, caption_height, gap)
    captions = np.broadcast_to(captions, (frames.shape[0], *captions.shape))
    return np.ascontiguousarray(np.concatenate([captions, frames], axis=1))


def panel_grid(columns: Mapping[str, object] | Sequence[tuple[str, object]], **options) -> np.ndarray:
    """`panel_strip` with its F frames as the rows of one picture, the captions once on top (e.g. one row per
    (reference, driving) pair): uint8 (caption_height + F * tile height, total width, 3). `options`: those of
    `panel_strip`."""
    captions, frames = _panel(columns, **options)
    return np.concatenate([captions, *frames], axis=0)


def _panel(
    columns, scale: float = 1.0, interpolation: str = "nearest", caption_height: int | None = None, gap: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of a panel: the caption bars uint8 (caption_height, width, 3) and the tiles (F, tile height,
    width, 3), with `gap` white columns between the columns."""
    pairs = list(columns.items()) if isinstance(columns, Mapping) else list(columns)
    if not pairs:
        raise ValueError("`columns` is empty; pass at least one (caption, frames) pair.")
    tiles = [(str(caption), _as_frames(frames, str(caption))) for caption, frames in pairs]
    num_frames = max(frames.shape[0] for _, frames in tiles)
    if any(frames.shape[0] not in (1, num_frames) for _, frames in tiles):
        counts = {caption: frames.shape[0] for caption, frames in tiles}
        raise ValueError(f"All columns need the same number of frames (or 1); got {counts}.")
    if not scale > 0:
        raise ValueError(f"`scale` must be positive; got {scale}.")
    tile_height = max(1, round(max(frames.shape[1] for _, frames in tiles) * scale))
    caption_height = caption_height or max(12, tile_height // 8)
    bars, parts = [], []
    for index, (caption, frames) in enumerate(tiles):
        tile_width = max(1, round(frames.shape[2] * tile_height / frames.shape[1]))
        frames = _resize(frames, tile_height, tile_width, interpolation)
        parts.append(np.broadcast_to(frames, (num_frames, *frames.shape[1:])))
        bars.append(caption_tile(caption, tile_width, caption_height))
        if gap and index < len(tiles) - 1:
            parts.append(np.full((num_frames, tile_height, gap, 3), 255, np.uint8))
            bars.append(np.full((caption_height, gap, 3), 255, np.uint8))
    return np.concatenate(bars, axis=1), np.concatenate(parts, axis=2)
