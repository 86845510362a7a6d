"""Photographic appearance for SynthFace: what a photo has and a flat drawing has not, drawn once per video.

A model trained on flat-shaded drawings meets photos with shading, skin and hair grain, busy backgrounds, blur, sensor
noise, JPEG blocks and odd colour. An `Appearance` adds all of these to a rendered video, the same way on every frame
(one lighting, one camera), so that only the face's motion changes between frames:

- a **backdrop** from the photo textures shipped in `textures/` (CC0 / public domain, see its LICENSE), blurred as
  by depth of field, behind the drawn body;
- **shading and grain on the head** in face units: a light from one side, a darker rim, a highlight, and the grain
  of a photo texture. They are warped with the head pose every frame, so they move with the head as skin does;
- **the camera**, in image space: uneven light, white balance, gamma, contrast, saturation (down to grayscale),
  blur, grain (fresh on every frame, as sensor noise is) and JPEG compression;
- **the face people make for a photo**: often a smile, sometimes showing teeth or with raised brows, held from
  frame 0 on. The label's motion is added to it, so the model learns motion *from* the face it is given, not only
  from SynthFace's neutral first frames.

`sample_appearance(rng)` draws one; `render_frames(..., appearance=...)` applies it. Everything is deterministic from
the draw, so the two frames of a training pair (rendered separately) get the same look.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from lfdm.data.synthface.expressions import ACTION_INDEX, ACTIONS

TEXTURES = Path(__file__).with_name("textures")
_FACE_EXTENT = 0.75  # the head's shading field covers [-0.75, 0.75] face units around the head centre
_FIELD_SIZE = 96  # pixels of that field
# Textures whose fine grain looks like skin pores or hair (the others have lines and letters that would draw shapes)
GRAIN_TEXTURES = ("chelsea", "grass", "gravel")


@lru_cache(maxsize=1)
def texture_names() -> tuple[str, ...]:
    names = tuple(sorted(path.stem for path in TEXTURES.glob("*.jpg")))
    if not names:
        raise FileNotFoundError(f"No photo textures in {TEXTURES}; the lfdm package is incomplete (reinstall it).")
    return names


@lru_cache(maxsize=16)
def load_texture(name: str) -> np.ndarray:
    """A shipped photo texture: uint8 (256, 256, 3) RGB, read-only."""
    image = cv2.imread(str(TEXTURES / f"{name}.jpg"), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"Photo texture {name!r} not found in {TEXTURES}.")
    image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    image.setflags(write=False)
    return image


@dataclass(frozen=True)
class Appearance:
    """One photographic look. Fractions and factors are dimensionless; blur is in pixels of a 64 px frame."""

    seed: int  # of the random fields (backdrop crop, grain) this look draws
    backdrop: str | None  # photo texture behind the body, or None to keep the drawn background
    backdrop_zoom: float  # fraction of the texture's side the backdrop shows
    backdrop_blur: float  # depth of field, px of a 64 px frame
    backdrop_tint: tuple[float, float, float]  # RGB gains of the backdrop
    backdrop_saturation: float
    skin: str  # photo texture whose grain the head gets
    skin_grain: float  # amplitude of that grain (relative brightness)
    skin_scale: float  # fraction of the texture's side spread over the head's field
    light_angle: float  # radians, direction the light comes from in the face's frame
    light: float  # relative brightness difference from the lit to the dark side of the head
    rim: float  # darkening towards the head's outline
    highlight: float  # strength of a soft specular spot
    image_light_angle: float  # radians: uneven light over the whole picture
    image_light: float
    gains: tuple[float, float, float]  # white balance, RGB
    gamma: float
    contrast: float
    saturation: float  # 0 = grayscale
    blur: float  # px of a 64 px frame, 0 = sharp
    noise: float  # sensor noise std (fraction of full scale), drawn anew every frame
    jpeg_quality: int | None  # None = no compression
    expression: tuple[float, ...] = (0.0,) * len(ACTIONS)  # facial actions held from frame 0 on (ACTIONS order)

    def hold_expression(self, actions: np.ndarray) -> np.ndarray:
        """The frames' actions (T, len(ACTIONS)) with this look's resting expression added, within [-1, 1.3]."""
        if not any(self.expression):
            return actions
        return np.clip(actions + np.asarray(self.expression)[None], -1.0, 1.3)

    # --- the drawing stage (at the renderer's supersampled size) --------------------------------------------------

    def backdrop_image(self, size: int) -> np.ndarray | None:
        """The picture behind the body: uint8 (size, size, 3), or None to keep the drawn background."""
        if self.backdrop is None:
            return None
        rng = np.random.default_rng([self.seed, 0xBAC])
        texture = load_texture(self.backdrop)
        side = max(16, int(round(texture.shape[0] * self.backdrop_zoom)))
        top, left = rng.integers(0, texture.shape[0] - side + 1, size=2)
        crop = texture[top : top + side, left : left + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        image = cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32)
        gray = image.mean(-1, keepdims=True)
        image = gray + (image - gray) * self.backdrop_saturation
        image *= np.float32(self.backdrop_tint)
        if self.backdrop_blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), self.backdrop_blur * size / 64)
        return np.clip(image, 0, 255).astype(np.uint8)

    def shade_head(self, canvas: np.ndarray, background: np.ndarray, pose: np.ndarray) -> None:
        """Light and grain on what this frame drew over `background` (the moving head), in place.

        pose: the frame's 2x3 face units -> pixels matrix; the field moves, turns and scales with the head.
        """
        size = canvas.shape[0]
        step = 2 * _FACE_EXTENT / _FIELD_SIZE
        field_to_face = np.array([[step, 0, -_FACE_EXTENT + step / 2], [0, step, -_FACE_EXTENT + step / 2], [0, 0, 1]])
        matrix = pose @ field_to_face
        field = cv2.warpAffine(
            _head_field(self), matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
            borderValue=1.0,
        )  # fmt: skip
        changed = cv2.transform(cv2.absdiff(canvas, background), np.ones((1, 3), np.float32))  # summed, saturated
        field[changed == 0] = 1.0  # only where this frame drew the head
        cv2.multiply(canvas, cv2.merge((field, field, field)), dst=canvas, dtype=cv2.CV_8U)  # saturates at 255

    # --- the camera (at the output size) ---------------------------------------------------------------------------

    def photograph(self, frames: np.ndarray, frame_indices: np.ndarray) -> np.ndarray:
        """The camera's part: uint8 (F, H, W, 3) -> the same, each frame with its own sensor noise."""
        count, height, width = frames.shape[:3]
        image = frames.astype(np.float32) / 255
        rows, columns = np.meshgrid(np.linspace(-0.5, 0.5, height), np.linspace(-0.5, 0.5, width), indexing="ij")
        ramp = math.cos(self.image_light_angle) * columns + math.sin(self.image_light_angle) * rows
        image *= (1 + self.image_light * ramp).astype(np.float32)[None, :, :, None]
        image *= np.float32(self.gains)
        image = np.clip(image, 0, 1) ** self.gamma
        mean = image.mean(axis=(1, 2, 3), keepdims=True)
        image = mean + (image - mean) * self.contrast
        gray = image @ np.float32([0.299, 0.587, 0.114])
        image = gray[..., None] + (image - gray[..., None]) * self.saturation
        if self.blur > 0:
            sigma = self.blur * width / 64
            image = np.stack([cv2.GaussianBlur(frame, (0, 0), sigma) for frame in image])
        if self.noise > 0:
            for k, index in enumerate(np.asarray(frame_indices).tolist()):
                rng = np.random.default_rng([self.seed, int(index), 0x9A1])
                image[k] += rng.normal(0, self.noise, image.shape[1:]).astype(np.float32)
        frames = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        if self.jpeg_quality is not None:
            frames = np.stack([_jpeg(frame, self.jpeg_quality) for frame in frames])
        return frames


@lru_cache(maxsize=64)
def _head_field(look: Appearance) -> np.ndarray:
    """Brightness factor over the head in face units: float32 (_FIELD_SIZE, _FIELD_SIZE), ~1 on average."""
    axis = (np.arange(_FIELD_SIZE, dtype=np.float32) + 0.5) / _FIELD_SIZE * 2 * _FACE_EXTENT - _FACE_EXTENT
    y, x = np.meshgrid(axis, axis, indexing="ij")
    side = np.clip((x * math.cos(look.light_angle) + y * math.sin(look.light_angle)) / 0.3, -1, 1)
    radius = np.sqrt((x / 0.3) ** 2 + (y / 0.38) ** 2)
    field = (1 + look.light * 0.5 * side) * (1 - look.rim * np.clip(radius, 0, 1.2) ** 4 / 1.2**4)
    spot_x, spot_y = -0.12 * math.cos(look.light_angle), -0.12 * math.sin(look.light_angle) - 0.05
    field += look.highlight * np.exp(-((x - spot_x) ** 2 + (y - spot_y) ** 2) / (2 * 0.06**2))
    if look.skin_grain > 0:
        rng = np.random.default_rng([look.seed, 0x5C1])
        texture = load_texture(look.skin).mean(-1).astype(np.float32)
        side_px = max(8, int(round(texture.shape[0] * look.skin_scale)))
        top, left = rng.integers(0, texture.shape[0] - side_px + 1, size=2)
        grain = cv2.resize(texture[top : top + side_px, left : left + side_px], (_FIELD_SIZE, _FIELD_SIZE))
        grain -= cv2.GaussianBlur(grain, (0, 0), 3.0)  # only the fine grain: no shapes of the photo on the skin
        grain /= grain.std() + 1e-6
        field *= 1 + look.skin_grain * np.clip(grain, -2.5, 2.5)
    return np.ascontiguousarray(field, dtype=np.float32)


def _jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover (OpenCV encodes any uint8 RGB frame)
        return frame
    return cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1]


def _resting_expression(rng: np.random.Generator) -> tuple[float, ...]:
    """Half the time neutral; otherwise mostly a smile (lips closed or showing teeth), sometimes raised brows."""
    actions = np.zeros(len(ACTIONS))
    kind = rng.random()
    if kind < 0.5:
        return tuple(actions)
    if kind < 0.9:  # a smile for the camera
        smile = rng.uniform(0.25, 0.9)
        actions[ACTION_INDEX["mouth_corner_up"]] = smile
        actions[ACTION_INDEX["cheek_raise"]] = smile * rng.uniform(0.3, 0.9)
        actions[ACTION_INDEX["mouth_stretch"]] = smile * rng.uniform(0.1, 0.5)
        actions[ACTION_INDEX["mouth_open"]] = rng.uniform(0.1, 0.55) if rng.random() < 0.6 else 0.0
        actions[ACTION_INDEX["eye_open"]] = -smile * rng.uniform(0.0, 0.25)
    else:  # eyebrows up, a little open mouth
        actions[ACTION_INDEX["brow_inner_raise"]] = rng.uniform(0.15, 0.5)
        actions[ACTION_INDEX["brow_outer_raise"]] = rng.uniform(0.1, 0.5)
        actions[ACTION_INDEX["mouth_open"]] = rng.uniform(0.0, 0.3)
    return tuple(float(value) for value in actions)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """One random photographic look; each effect is sometimes off, so plain looks stay in the mix."""
    names = texture_names()

    def sometimes(p: float, low: float, high: float) -> float:
        return float(rng.uniform(low, high)) if rng.random() < p else 0.0

    backdrop = names[int(rng.integers(len(names)))] if rng.random() < 0.7 else None
    return Appearance(
        seed=int(rng.integers(1 << 31)),
        backdrop=backdrop,
        backdrop_zoom=float(rng.uniform(0.35, 1.0)),
        backdrop_blur=sometimes(0.6, 0.3, 2.5),
        backdrop_tint=tuple(float(g) for g in np.exp(rng.normal(0, 0.15, 3))),
        backdrop_saturation=float(rng.uniform(0.3, 1.2)),
        skin=GRAIN_TEXTURES[int(rng.integers(len(GRAIN_TEXTURES)))],
        skin_grain=sometimes(0.8, 0.02, 0.06),
        skin_scale=float(rng.uniform(0.15, 0.6)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light=sometimes(0.85, 0.1, 0.6),
        rim=sometimes(0.8, 0.1, 0.45),
        highlight=sometimes(0.5, 0.03, 0.2),
        image_light_angle=float(rng.uniform(0, 2 * math.pi)),
        image_light=sometimes(0.6, 0.05, 0.4),
        gains=tuple(float(g) for g in np.exp(rng.normal(0, 0.07, 3))),
        gamma=float(np.exp(rng.uniform(-0.3, 0.3))),
        contrast=float(rng.uniform(0.75, 1.3)),
        saturation=0.0 if rng.random() < 0.12 else float(rng.uniform(0.5, 1.3)),
        blur=sometimes(0.4, 0.3, 0.6),
        noise=sometimes(0.6, 0.005, 0.03),
        jpeg_quality=int(rng.integers(25, 91)) if rng.random() < 0.5 else None,
        expression=_resting_expression(rng),
    )
