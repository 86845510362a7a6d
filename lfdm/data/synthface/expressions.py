"""SynthFace expressions: facial-action targets per label and the time course of one video.

Every video starts from the neutral face at frame 0. An expression is a target vector of facial actions (and a
small head motion) reached through an envelope: onset at a random time, a smooth ramp of random speed up to a
random intensity in [0.6, 1.0], a hold and sometimes a partial release. Blinks, gaze shifts and micro head motion
are added in every class, so `neutral` is not a still image.

Extra actions (`SYNTHFACE_EXTRA_LABELS`) are rendered only on request and were never part of the shipped model's
data: a `wink` closes the eye on the take's `side` and reopens it, with a small head tilt towards that eye. Drawing
them added nothing to the seven labels' random draws or pixels.

Time is normalised: u = frame / (num_frames - 1) in [0, 1], so a video of any length shows the whole expression.
The timing of a take (onset, blinks, gaze, micro motion) is drawn from (identity, take) only, so two labels of the
same take are identical until the onset and differ after it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SYNTHFACE_LABELS = ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
# Actions the renderer draws on request only (not in the default label set, nor in the shipped model's data). Their
# label indices follow the seven: wink = 7.
SYNTHFACE_EXTRA_LABELS = ("wink",)
ALL_SYNTHFACE_LABELS = SYNTHFACE_LABELS + SYNTHFACE_EXTRA_LABELS

ACTIONS = (
    "brow_inner_raise",
    "brow_outer_raise",
    "brow_lower",
    "brow_knit",
    "eye_open",  # > 0 widens, < 0 narrows
    "cheek_raise",
    "nose_wrinkle",
    "upper_lip_raise",
    "mouth_corner_up",
    "mouth_corner_down",
    "mouth_open",
    "mouth_stretch",  # > 0 wider, < 0 rounder (an O)
    "lip_press",
    "jaw_drop",
)
ACTION_INDEX = {name: index for index, name in enumerate(ACTIONS)}
# Actions of the lower face can start a little after the brows and eyes (`VideoParams.lower_face_lag`).
LOWER_FACE = np.array([name in ACTIONS[5:] for name in ACTIONS])

# Targets at intensity 1. Exaggerated on purpose: they must read at 64 px.
EXPRESSION_TARGETS: dict[str, dict[str, float]] = {
    "anger": {
        "brow_lower": 1.0,
        "brow_knit": 1.0,
        "eye_open": -0.45,
        "lip_press": 1.0,
        "mouth_corner_down": 0.35,
        "nose_wrinkle": 0.25,
    },
    "disgust": {
        "nose_wrinkle": 1.0,
        "upper_lip_raise": 1.0,
        "brow_lower": 0.55,
        "brow_knit": 0.35,
        "eye_open": -0.35,
        "cheek_raise": 0.35,
        "mouth_corner_down": 0.6,
    },
    "fear": {
        "brow_inner_raise": 1.0,
        "brow_outer_raise": 0.35,
        "brow_knit": 0.8,
        "eye_open": 0.9,
        "mouth_stretch": 1.0,
        "mouth_open": 0.45,
        "mouth_corner_down": 0.35,
        "jaw_drop": 0.15,
    },
    "happiness": {
        "mouth_corner_up": 1.0,
        "cheek_raise": 1.0,
        "eye_open": -0.25,
        "mouth_stretch": 0.45,
        "mouth_open": 0.35,
    },
    "neutral": {},
    "sadness": {
        "brow_inner_raise": 1.0,
        "brow_outer_raise": -0.35,
        "brow_knit": 0.45,
        "eye_open": -0.4,
        "mouth_corner_down": 1.0,
        "lip_press": 0.3,
    },
    "surprise": {
        "brow_inner_raise": 1.0,
        "brow_outer_raise": 1.0,
        "eye_open": 1.0,
        "mouth_open": 1.0,
        "jaw_drop": 1.0,
        "mouth_stretch": -0.5,
    },
    "wink": {},  # the closing eye is its own channel (`FrameStates.wink`), drawn on one side only
}
# Characteristic head motion at intensity 1: (tilt degrees, dx, dy, scale factor - 1), face units.
HEAD_TARGETS: dict[str, tuple[float, float, float, float]] = {
    "anger": (0.0, 0.0, 0.012, 0.035),  # chin down, head forward
    "disgust": (-5.0, -0.018, -0.005, -0.02),  # turn away (mirrored with the asymmetric side)
    "fear": (2.0, 0.0, -0.012, -0.045),  # pull back
    "happiness": (4.0, 0.0, -0.008, 0.01),
    "neutral": (0.0, 0.0, 0.0, 0.0),
    "sadness": (3.0, 0.0, 0.025, -0.01),  # head down
    "surprise": (0.0, 0.0, -0.02, -0.025),  # up and back
    "wink": (4.0, 0.0, 0.004, 0.0),  # towards the winking eye (mirrored with the side), follows the wink
}
# Micro head motion amplitudes: (tilt degrees, dx, dy, scale - 1)
_MICRO_AMPLITUDE = np.array([1.2, 0.004, 0.003, 0.006])


@dataclass(frozen=True)
class VideoParams:
    """Everything random about one video; times are normalised to [0, 1] over the clip."""

    identity_seed: int
    label: str
    take: int
    onset: float  # expression starts (same for every label of a take)
    ramp: float  # duration of the rise
    intensity: float  # peak, in [0.6, 1.0] (0 for neutral)
    lower_face_lag: float
    release_at: float | None  # start of a partial release, or None
    release_level: float  # fraction of the peak kept after the release
    side: int  # +1 or -1: side of asymmetric actions (disgust)
    target: tuple[float, ...]  # action vector at intensity 1, in ACTIONS order
    head_target: tuple[float, float, float, float]
    blinks: tuple[tuple[float, float], ...]  # (centre, duration)
    gaze: tuple[tuple[float, float, float], ...]  # (time, x, y): gaze jumps, x, y in [-1, 1]
    micro: tuple[tuple[float, ...], ...]  # (4, 2 sinusoids x (frequency, phase))
    wink: tuple[float, float, float] | None = None  # wink only: (closing, hold, reopening) durations from the onset

    def to_dict(self) -> dict:
        """JSON-ready parameters (for metadata files)."""
        return {
            "onset": round(self.onset, 4),
            "ramp": round(self.ramp, 4),
            "intensity": round(self.intensity, 4),
            "lower_face_lag": round(self.lower_face_lag, 4),
            "release_at": None if self.release_at is None else round(self.release_at, 4),
            "release_level": round(self.release_level, 4),
            "side": self.side,
            "blinks": [[round(c, 4), round(d, 4)] for c, d in self.blinks],
        } | ({} if self.wink is None else {"wink": [round(d, 4) for d in self.wink]})


def label_index(label: str) -> int:
    """Index of a label in ALL_SYNTHFACE_LABELS (the seven first, then the extra actions); ValueError listing the
    valid labels otherwise."""
    if label not in ALL_SYNTHFACE_LABELS:
        raise ValueError(
            f"unknown SynthFace label {label!r}; choose one of {', '.join(SYNTHFACE_LABELS)} or the extra action(s) "
            f"{', '.join(SYNTHFACE_EXTRA_LABELS)}."
        )
    return ALL_SYNTHFACE_LABELS.index(label)


def sample_video_params(identity_seed: int, label: str, take: int) -> VideoParams:
    """The random course of video (identity, label, take); deterministic."""
    index = label_index(label)
    if take < 0:
        raise ValueError(f"takes are non-negative integers; got {take}.")
    timing = np.random.default_rng([identity_seed, take, 0x7E])
    onset = timing.uniform(0.08, 0.35)
    blinks = []
    for _ in range(timing.choice(3, p=(0.25, 0.5, 0.25))):
        centre, duration = float(timing.uniform(0.1, 0.95)), float(timing.uniform(0.05, 0.09))
        if all(abs(centre - other) > 0.15 for other, _ in blinks):  # two blinks never merge into one long one
            blinks.append((centre, duration))
    gaze = [(0.0, 0.0, 0.0)]
    for _ in range(timing.integers(0, 3)):
        gaze.append((float(timing.uniform(0.15, 0.9)), float(timing.uniform(-1, 1)), float(timing.uniform(-0.6, 0.6))))
    gaze.sort()
    micro = timing.uniform((0.3, 0.0), (1.6, 2 * np.pi), size=(4, 2, 2))

    expression = np.random.default_rng([identity_seed, take, index, 0xE7])
    ramp = expression.uniform(0.1, 0.35)
    release_at = None
    if expression.random() < 0.3 and onset + ramp + 0.15 < 0.85:
        release_at = float(expression.uniform(onset + ramp + 0.15, 0.9))
    target = np.zeros(len(ACTIONS))
    for name, value in EXPRESSION_TARGETS[label].items():
        target[ACTION_INDEX[name]] = value * expression.uniform(0.85, 1.15)
    if label == "happiness":  # smiles with closed lips, or showing teeth
        target[ACTION_INDEX["mouth_open"]] = expression.uniform(0.15, 0.6)
    intensity = 0.0 if label == "neutral" else float(expression.uniform(0.6, 1.0))
    lower_face_lag = float(expression.uniform(0.0, 0.05))
    release_level = float(expression.uniform(0.45, 0.8))
    side = int(expression.choice((-1, 1)))
    wink = None
    if label == "wink":  # drawn after every draw the seven labels make, so theirs stay as they were
        # a closed eye held for at least 0.12 of the clip: 2 or more of 16 evenly sampled frames see it shut
        wink = tuple(float(v) for v in expression.uniform((0.06, 0.12, 0.08), (0.12, 0.28, 0.15)))
    return VideoParams(
        identity_seed=int(identity_seed),
        label=label,
        take=int(take),
        onset=float(onset),
        ramp=float(ramp),
        intensity=intensity,
        lower_face_lag=lower_face_lag,
        release_at=release_at,
        release_level=release_level,
        side=side,
        target=tuple(float(v) for v in target),
        head_target=HEAD_TARGETS[label],
        blinks=tuple(blinks),
        gaze=tuple(gaze),
        micro=tuple(tuple(float(v) for v in row.ravel()) for row in micro),
        wink=wink,
    )


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def envelope(params: VideoParams, times: np.ndarray) -> np.ndarray:
    """Expression strength at normalised times (T,), in [0, intensity]; exactly 0 before the onset."""
    strength = _smoothstep((times - params.onset) / params.ramp)
    if params.release_at is not None:
        strength = strength * (1 - (1 - params.release_level) * _smoothstep((times - params.release_at) / 0.15))
    return params.intensity * strength


def wink_course(params: VideoParams, times: np.ndarray) -> np.ndarray:
    """Closure of the winking eye at normalised times (T,), in [0, 1] (1 = shut): it closes from the onset, stays
    shut, then reopens. All zeros for a video without a wink."""
    if params.wink is None:
        return np.zeros_like(times)
    closing, hold, reopening = params.wink
    reopen_at = params.onset + closing + hold
    return _smoothstep((times - params.onset) / closing) * (1 - _smoothstep((times - reopen_at) / reopening))


@dataclass(frozen=True)
class FrameStates:
    """Per-frame state of a video: actions (T, len(ACTIONS)), blink (T,) in [0, 1] (1 = closed, both eyes),
    gaze (T, 2) in [-1, 1], pose (T, 4) = (tilt degrees, dx, dy, scale factor), wink (T,) in [0, 1] (1 = the eye
    on `wink_side` closed; -1 = image left) over the blink."""

    actions: np.ndarray
    blink: np.ndarray
    gaze: np.ndarray
    pose: np.ndarray
    wink: np.ndarray
    wink_side: int


def animate(params: VideoParams, times: np.ndarray) -> FrameStates:
    """The state of each frame at normalised times (T,) in [0, 1]."""
    times = np.asarray(times, float)
    upper = envelope(params, times)
    lower = envelope(params, times - params.lower_face_lag)
    target = np.array(params.target)
    actions = np.where(LOWER_FACE[None, :], lower[:, None], upper[:, None]) * target[None, :]

    blink = np.zeros_like(times)
    for centre, duration in params.blinks:
        blink = np.maximum(blink, np.clip(1 - np.abs(times - centre) / (duration / 2), 0, 1) ** 0.7)

    gaze = np.zeros((len(times), 2))
    for start, x, y in params.gaze:
        gaze[times >= start] = (x, y)

    micro = np.array(params.micro).reshape(4, 2, 2)
    frequency, phase = micro[..., 0], micro[..., 1]
    waves = np.sin(2 * np.pi * frequency[None] * times[:, None, None] + phase[None]) - np.sin(phase)[None]
    pose = waves.sum(-1) * _MICRO_AMPLITUDE / 2  # (T, 4), zero at u = 0
    wink = wink_course(params, times)
    head = np.array(params.head_target) * np.array([params.side, params.side, 1, 1])
    head_course = upper if params.wink is None else params.intensity * wink  # a wink's tilt comes and goes with it
    pose = pose + head_course[:, None] * head[None, :]
    pose[:, 3] += 1.0
    return FrameStates(actions=actions, blink=blink, gaze=gaze, pose=pose, wink=wink, wink_side=params.side)
