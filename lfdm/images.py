"""User images -> the model's input: (1, 3, S, S) float in [0, 1], RGB, aspect kept, black padding.

Everything a user may hand over is accepted: a file path, a PIL image of any mode (RGBA, LA, P, L, 1, I, I;16, F,
CMYK, YCbCr; EXIF orientation applied; an animation gives its first frame), a numpy array (H, W), (H, W, 1|3|4) of
uint8, uint16, bool or float in [0, 1], or a tensor (3, H, W) / (1, 3, H, W) in [0, 1]. Everything is first turned
into 8-bit RGB, because that is what the model was trained on (video frames), then resized and padded by the same
`resize_and_pad` as the training frames.

Transparency is composited onto **black**: the training frames are padded with black, so a transparent
background becomes the same colour as the padding around it rather than a white box inside a black frame.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lfdm.data.transforms import resize_and_pad

MIN_IMAGE_SIDE = 8  # pixels; smaller images carry no usable content
MAX_ASPECT_RATIO = 20.0  # longer side / shorter side; beyond this the padded picture is a thin line


def load_image(path: str | os.PathLike) -> Image.Image:
    """Open an image file; a clear error for a missing, unreadable or decompression-bomb file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image {path!r} does not exist; pass the path of a PNG, JPEG or similar file.")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and errors at twice that; refuse both.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(f"image {path!r} is too large to open safely ({error}); use a smaller picture.") from error
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"could not read {path!r} as an image ({error}); use a PNG, JPEG, WebP or BMP file."
        ) from error
    return image


def preprocess_image(image, size: int) -> torch.Tensor:
    """Any user image -> (1, 3, size, size) float32 in [0, 1] on the CPU.

    Raises ValueError (FileNotFoundError for a missing path) with a plain message for unusable input: too small
    (< MIN_IMAGE_SIDE pixels a side), too elongated (> MAX_ASPECT_RATIO), too many pixels, or values out of range.
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    rgb = to_rgb_uint8(image)
    check_image_size(rgb.shape[0], rgb.shape[1])
    padded = resize_and_pad(rgb, size)
    return torch.from_numpy(np.ascontiguousarray(padded)).permute(2, 0, 1)[None].float() / 255


def check_image_size(height: int, width: int) -> None:
    """Reject images too small, too elongated or too large to use (ValueError)."""
    if min(height, width) < MIN_IMAGE_SIDE:
        raise ValueError(
            f"the image is {width}x{height} pixels; each side needs at least {MIN_IMAGE_SIDE}. Use a larger picture."
        )
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"the image is {width}x{height} pixels, more than {MAX_ASPECT_RATIO:g} times longer than wide; "
            "crop it closer to a square."
        )
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and height * width > limit:
        raise ValueError(f"the image has {height * width} pixels, more than {limit}; use a smaller picture.")


def to_rgb_uint8(image) -> np.ndarray:
    """PIL image, numpy array or tensor -> uint8 (H, W, 3) RGB (rules in the module docstring)."""
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, torch.Tensor):
        return _array_to_rgb(_tensor_to_hwc(image))
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise TypeError(
        f"`image` must be a PIL image, a numpy array, a torch tensor or a file path; got {type(image).__name__}."
    )


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    if getattr(image, "n_frames", 1) > 1:
        image.seek(0)  # an animation: its first frame is the picture to animate
    check_image_size(image.height, image.width)  # before decoding a huge image into memory
    image = ImageOps.exif_transpose(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return _array_to_rgb(np.asarray(image.convert("RGBA")))
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return _array_to_rgb(np.asarray(image))
    if image.mode == "F":  # 32-bit float pixels: [0, 1] if they fit, else the 8-bit range
        values = np.asarray(image, dtype=np.float32)
        return _array_to_rgb(values if values.max() <= 1 else np.clip(values, 0, 255) / 255)
    if image.mode == "1":
        image = image.convert("L")
    if image.mode != "RGB":
        try:
            image = image.convert("RGB")
        except ValueError as error:
            raise ValueError(
                f"cannot convert an image of mode {image.mode!r} to RGB; save it as an RGB PNG."
            ) from error
    return np.asarray(image)


def _tensor_to_hwc(tensor: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) with C in {1, 3, 4} -> numpy (H, W, C)."""
    if tensor.ndim == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"pass one image at a time; got a batch tensor of shape {tuple(tensor.shape)}.")
        tensor = tensor[0]
    if tensor.ndim != 3 or tensor.shape[0] not in (1, 3, 4):
        raise ValueError(f"an image tensor must be (3, H, W) or (1, 3, H, W); got shape {tuple(tensor.shape)}.")
    if tensor.dtype in (torch.float16, torch.bfloat16):
        tensor = tensor.float()
    return tensor.detach().cpu().permute(1, 2, 0).numpy()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 1|3|4) of uint8 / uint16 / int / bool / float in [0, 1] -> uint8 (H, W, 3)."""
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4):
        raise ValueError(
            f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got shape {array.shape}. "
            "For a (3, H, W) array, transpose it to (H, W, 3) first."
        )
    check_image_size(array.shape[0], array.shape[1])
    if array.dtype == np.uint8 and array.shape[-1] == 3:  # already 8-bit RGB: the float round trip below is exact
        return array.copy()  # but takes seconds on a 6000x6000 photo
    unit = _to_unit_range(array)  # float32 in [0, 1]
    if unit.shape[-1] == 4:  # premultiply: composite onto black, the colour of the padding
        unit = unit[..., :3] * unit[..., 3:]
    elif unit.shape[-1] == 1:
        unit = np.repeat(unit, 3, axis=-1)
    return np.round(unit * 255).astype(np.uint8)


def _to_unit_range(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    if array.dtype == bool:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        # 16-bit images (uint16, or Pillow's 32-bit "I" mode holding 16-bit data); 8-bit data stored wide stays.
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 65535:
            raise ValueError(f"integer image values must be in [0, 65535]; got [{low}, {high}].")
        is_16_bit = array.dtype.kind == "u" and array.dtype.itemsize == 2
        scale = 65535 if is_16_bit or high > 255 else 255
        return array.astype(np.float32) / scale
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ValueError("the image holds NaN or infinite values; pass finite values in [0, 1].")
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise ValueError(
                f"a float image must be in [0, 1]; got values in [{low:.3g}, {high:.3g}]. "
                + ("Divide by 255 first." if high <= 255 else "Rescale it to [0, 1] first.")
            )
        return np.clip(array.astype(np.float32), 0, 1)
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8, uint16 or float in [0, 1].")
