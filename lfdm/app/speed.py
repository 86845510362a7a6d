"""How long a run takes on this machine, measured by the runs themselves (`GenerationService` records every run).

A run's work (`Work`) is counted in three units, each with its own measured rate in seconds: U-Net frame-steps
(sampling), decoded frames (the decoder at the model's size) and megapixel-frames rendered at the photo's size;
writing a generation's files is one more rate per megapixel-frame. A Compare run samples its actions in batches,
cheaper per action than one generation each, so it keeps a rate of its own. Each rate is the mean of what it was
and the newest measurement, so it follows the machine's load without jumping with every run.
"""

from __future__ import annotations

from dataclasses import dataclass

SHOWN_ABOVE_S = 5.0  # runs expected to take longer than this get "about N s" before they start


@dataclass(frozen=True)
class Work:
    """What one run does.

    Attributes:
        sampling: U-Net frame-steps: steps x clips x the clip's frames x actions.
        frames: decoded frames: the video's frames x actions.
        megapixels: the size of each frame rendered at the photo's size; 0 for the model's own frames.
    """

    sampling: float
    frames: float
    megapixels: float

    @classmethod
    def of(cls, pipe, steps: int, num_frames: int | None, num_labels: int, video_size) -> Work:
        """The work of sampling `num_labels` videos of `num_frames` frames (None: the model's clip) in `steps`
        steps with `pipe`, rendered at `video_size` (height, width), or at the model's size when None."""
        frames = num_frames or pipe.num_frames
        return cls(
            sampling=pipe.num_sampling_steps(frames, steps) * pipe.num_frames * num_labels,
            frames=frames * num_labels,
            megapixels=0.0 if video_size is None else video_size[0] * video_size[1] / 1e6,
        )


class SpeedBook:
    """Seconds per unit of work of each model on this machine."""

    def __init__(self):
        self._rates: dict[str, dict[str, float]] = {}

    def rates(self, model: str) -> dict[str, float]:
        """A copy of the model's rates: "step", "frame", "megapixel", "writing", "compare" (those measured)."""
        return dict(self._rates.get(model, {}))

    def forget(self, model: str) -> None:
        self._rates.pop(model, None)

    def add_run(self, model: str, sampling_s: float, rendering_s: float, work: Work) -> None:
        """One pipeline call: seconds until its last sampling step, and after it (decoding, rendering). A run at
        the model's own size measures decoding; one at a photo's size, the rendering beyond it."""
        self._mean(model, "step", sampling_s / work.sampling)
        per_frame = rendering_s / work.frames
        if work.megapixels == 0 or "frame" not in self._rates.get(model, {}):
            self._mean(model, "frame", per_frame)
        else:
            frame = self._rates[model]["frame"]
            self._mean(model, "megapixel", max(per_frame - frame, 0.0) / work.megapixels)

    def add_writing(self, model: str, seconds: float, megapixel_frames: float) -> None:
        """Writing one generation's files (videos, GIF, panels) of `megapixel_frames`."""
        self._mean(model, "writing", seconds / max(megapixel_frames, 1e-6))

    def add_compare(self, model: str, seconds: float, work: Work) -> None:
        """One whole Compare run, per U-Net frame-step of all its actions."""
        self._mean(model, "compare", seconds / work.sampling)

    def estimate(self, model: str, work: Work, *, compare: bool = False) -> float | None:
        """Seconds that `work` takes (a generation with its files, or a Compare run); None before any run."""
        rates = self._rates.get(model, {})
        if compare and "compare" in rates:
            return rates["compare"] * work.sampling
        if "step" not in rates or "frame" not in rates:
            return None
        # Before any Compare run, its batched sampling is counted as separate runs (an upper bound), without files.
        per_megapixel = rates.get("megapixel", 0.0) + (0.0 if compare else rates.get("writing", 0.0))
        return rates["step"] * work.sampling + (rates["frame"] + per_megapixel * work.megapixels) * work.frames

    def _mean(self, model: str, key: str, value: float) -> None:
        rates = self._rates.setdefault(model, {})
        rates[key] = value if key not in rates else (rates[key] + value) / 2


def estimate_note(seconds: float | None) -> str:
    """Markdown for the page before a run: "This takes about **40 s** ..." above `SHOWN_ABOVE_S`, else ""."""
    if seconds is None or seconds <= SHOWN_ABOVE_S:
        return ""
    shown = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"
    return f"This takes about **{shown}** at the speed measured on this machine."
