"""Frame transforms for the data sets and the pipeline's user images: resize with black padding, colour jitter,
flips.

Everything works on numpy uint8 RGB frames, (H, W, 3) or (F, H, W, 3), before they become tensors: that is what
video files and images decode to, PIL's colour operations (which define the official jitter) take uint8, and a
clip is converted to a float tensor once at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageEnhance

COLOR_OPS = ("brightness", "contrast", "saturation", "hue")


def _check_image(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"`{name}` must be uint8 in [0, 255]; got {image.dtype}. Scale [0, 1] floats by 255 first.")
    if image.ndim not in (3, 4) or image.shape[-1] != 3:
        raise ValueError(f"`{name}` must be (H, W, 3) or (F, H, W, 3) RGB; got shape {image.shape}.")
    return image


def resize_longest(image: np.ndarray, size: int) -> np.ndarray:
    """Scale so the longer side is `size` pixels, keeping the aspect ratio.

    The shorter side becomes `int(side * size / longest)` (truncated, as the official preprocessing does).
    Shrinking uses `cv2.INTER_AREA` (the official filter: it averages every source pixel, so no aliasing);
    enlarging uses `cv2.INTER_CUBIC`, because INTER_AREA falls back to a blocky nearest/bilinear mix when it
    up-samples. The official data sets are always shrunk (896, 480 and 320 px sources to 128), so parity holds.

    Args:
        image: uint8 (H, W, 3) or (F, H, W, 3).
        size: the target length of the longer side.

    Returns:
        uint8 (h, w, 3) or (F, h, w, 3) with max(h, w) == size.
    """
    image = _check_image(image)
    if image.ndim == 4:
        return np.stack([resize_longest(frame, size) for frame in image])
    height, width = image.shape[:2]
    ratio = size / max(height, width)
    new_height, new_width = max(1, int(height * ratio)), max(1, int(width * ratio))
    if (new_height, new_width) == (height, width):
        return image
    interpolation = cv2.INTER_AREA if ratio < 1 else cv2.INTER_CUBIC
    return cv2.resize(image, (new_width, new_height), interpolation=interpolation)


def pad_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Pad with black to (size, size), centred (an odd remainder goes to the bottom / right).

    Args:
        image: uint8 (h, w, 3) or (F, h, w, 3) with h, w <= size.
    """
    image = _check_image(image)
    height, width = image.shape[-3:-1]
    if height > size or width > size:
        raise ValueError(f"Cannot pad a {height}x{width} image to {size}x{size}; resize it first.")
    top, left = (size - height) // 2, (size - width) // 2
    padding = [(top, size - height - top), (left, size - width - left), (0, 0)]
    if image.ndim == 4:
        padding = [(0, 0), *padding]
    return np.pad(image, padding)


def resize_and_pad(image: np.ndarray, size: int) -> np.ndarray:
    """Fit an image (or every frame of a clip) into a black square: `pad_to_square(resize_longest(image))`.

    Args:
        image: uint8 (H, W, 3) or (F, H, W, 3).
        size: output side in pixels.

    Returns:
        uint8 (size, size, 3) or (F, size, size, 3).
    """
    if size < 1:
        raise ValueError(f"`size` must be a positive number of pixels; got {size}.")
    return pad_to_square(resize_longest(image, size), size)


def horizontal_flip(frames: np.ndarray) -> np.ndarray:
    """Mirror left-right: (..., H, W, 3) -> same shape."""
    return np.ascontiguousarray(frames[..., ::-1, :])


def time_flip(frames: np.ndarray) -> np.ndarray:
    """Play backwards: (F, H, W, 3) -> same shape."""
    return np.ascontiguousarray(frames[::-1])


def random_flips(
    frames: np.ndarray, rng: np.random.Generator, *, time_flip_p: float = 0.5, horizontal_flip_p: float = 0.5
) -> np.ndarray:
    """The official stage-one flips: with probability `time_flip_p` play the frames backwards; otherwise, with
    probability `horizontal_flip_p`, mirror them. Never both (the official augmentation skips the mirror once the
    time flip fires)."""
    if rng.random() < time_flip_p:
        return time_flip(frames)
    if rng.random() < horizontal_flip_p:
        return horizontal_flip(frames)
    return frames


@dataclass(frozen=True)
class JitterParams:
    """One draw of `ColorJitter`: multiplicative factors (1 = unchanged), a hue shift in turns, and the op order."""

    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    hue: float = 0.0
    order: tuple[str, ...] = COLOR_OPS


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by `shift` turns (in [-0.5, 0.5]) in PIL's 8-bit HSV, wrapping around."""
    hue, saturation, value = image.convert("HSV").split()
    offset = int(shift * 255) % 256  # int() truncates toward zero, then wrap like uint8 arithmetic
    hue = Image.fromarray(((np.asarray(hue, np.int32) + offset) % 256).astype(np.uint8), "L")
    return Image.merge("HSV", (hue, saturation, value)).convert("RGB")


def _adjust(image: Image.Image, op: str, params: JitterParams) -> Image.Image:
    if op == "brightness":  # blend with black
        return ImageEnhance.Brightness(image).enhance(params.brightness)
    if op == "contrast":  # blend with the mean gray level
        return ImageEnhance.Contrast(image).enhance(params.contrast)
    if op == "saturation":  # blend with the grayscale image
        return ImageEnhance.Color(image).enhance(params.saturation)
    return _shift_hue(image, params.hue)


@dataclass(frozen=True)
class ColorJitter:
    """Random brightness, contrast, saturation and hue, one draw per clip, applied to every frame alike.

    Factors are drawn uniformly from `[max(0, 1 - x), 1 + x]`, the hue shift from `[-hue, hue]` turns, and applied
    with PIL's enhancers (the semantics of torchvision's functional ops on PIL images). Defaults are the official
    DM jitter (brightness 64/255, contrast and saturation 0.25, hue 0.04, fixed order); `LFAE_COLOR_JITTER` is
    the official stage-one one (0.1 each, random order).
    """

    brightness: float = 64 / 255
    contrast: float = 0.25
    saturation: float = 0.25
    hue: float = 0.04
    random_order: bool = False

    def __post_init__(self):
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0; got {getattr(self, name)}.")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"`hue` is a fraction of a turn in [0, 0.5]; got {self.hue}.")

    def sample(self, rng: np.random.Generator) -> JitterParams:
        """Draw one set of factors (and an op order when `random_order`)."""

        def factor(amount: float) -> float:
            return float(rng.uniform(max(0.0, 1 - amount), 1 + amount))

        order = tuple(COLOR_OPS[i] for i in rng.permutation(4)) if self.random_order else COLOR_OPS
        return JitterParams(
            brightness=factor(self.brightness),
            contrast=factor(self.contrast),
            saturation=factor(self.saturation),
            hue=float(rng.uniform(-self.hue, self.hue)),
            order=order,
        )

    @staticmethod
    def apply(frames: np.ndarray, params: JitterParams) -> np.ndarray:
        """Apply one draw to uint8 (H, W, 3) or (F, H, W, 3) frames; returns the same shape, uint8."""
        frames = _check_image(frames, "frames")
        if frames.ndim == 3:
            return ColorJitter.apply(frames[None], params)[0]
        ops = [op for op in params.order if _is_active(op, params)]
        out = []
        for frame in frames:
            image = Image.fromarray(frame)
            for op in ops:
                image = _adjust(image, op, params)
            out.append(np.asarray(image))
        return np.stack(out)

    def __call__(self, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Draw one set of factors and apply it to every frame: uint8 (F, H, W, 3) -> same."""
        return self.apply(frames, self.sample(rng))


def _is_active(op: str, params: JitterParams) -> bool:
    return (op == "hue" and params.hue != 0) or (op != "hue" and getattr(params, op) != 1.0)


DM_COLOR_JITTER = ColorJitter()
LFAE_COLOR_JITTER = ColorJitter(brightness=0.1, contrast=0.1, saturation=0.1, hue=0.1, random_order=True)


def crop_frames(frames: np.ndarray, rows: Sequence[int] | None, columns: Sequence[int] | None) -> np.ndarray:
    """Keep rows `rows[0]:rows[1]` and columns `columns[0]:columns[1]` of (..., H, W, 3) frames (None keeps all).

    Raises:
        ValueError: the crop reaches outside the frame (the frames are not the size the crop was made for).
    """
    height, width = frames.shape[-3:-1]
    for name, bounds, limit in (("rows", rows, height), ("columns", columns, width)):
        if bounds is not None and not 0 <= bounds[0] < bounds[1] <= limit:
            raise ValueError(
                f"Crop {name} {tuple(bounds)} do not fit frames of {height}x{width} (HxW); "
                "pass crop=None for frames that are already cropped or resized."
            )
    row_slice = slice(*rows) if rows is not None else slice(None)
    column_slice = slice(*columns) if columns is not None else slice(None)
    return frames[..., row_slice, column_slice, :]
