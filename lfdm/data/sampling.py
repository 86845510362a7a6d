"""Which frames of a video become a training clip or a training pair.

The three clip modes follow the official data sets (official_lfdm.md, section 3); the paper trains on 40-frame clips
that always start at the video's first frame, because the first frame is the image the DM is conditioned on.

With N frames in the video and F frames wanted:

- `uniform`: `int(linspace(0, N - 1, F))`: evenly spaced, first and last frame included.
- `random`: the uniform indices, each interior one moved to a random frame strictly between its uniform neighbours
  (offset drawn from `[1 - (u_i - u_{i-1}), u_{i+1} - u_i)`), then sorted; first and last stay fixed.
- `very_random`: F draws with replacement from [0, N), sorted, and the first one set to 0.

For `uniform` and `random`, a video shorter than F frames gives all its frames and then repeats the last one.
"""

from __future__ import annotations

import numpy as np

FRAME_SAMPLING_MODES = ("uniform", "random", "very_random")


def _check(num_video_frames: int, num_frames: int, mode: str) -> None:
    if mode not in FRAME_SAMPLING_MODES:
        raise ValueError(f"Unknown frame sampling {mode!r}; choose one of {FRAME_SAMPLING_MODES}.")
    if num_video_frames < 1:
        raise ValueError(f"The video has {num_video_frames} frames; it needs at least one.")
    if num_frames < 1:
        raise ValueError(f"`num_frames` must be at least 1; got {num_frames}.")


def sample_frame_indices(num_video_frames: int, num_frames: int, mode: str, rng: np.random.Generator) -> np.ndarray:
    """Frame indices for one clip, sorted, starting at 0.

    Args:
        num_video_frames: N, the number of frames in the video.
        num_frames: F, the clip length.
        mode: "uniform", "random" or "very_random" (see the module docstring).
        rng: the random source (unused by "uniform").

    Returns:
        int64 (F,) indices in [0, N), non-decreasing, the first one 0.
    """
    _check(num_video_frames, num_frames, mode)
    if mode == "very_random":
        indices = np.sort(rng.integers(0, num_video_frames, size=num_frames))
        indices[0] = 0
        return indices
    if num_video_frames < num_frames:
        # Too short: play the whole video, then hold its last frame.
        return np.minimum(np.arange(num_frames), num_video_frames - 1).astype(np.int64)
    uniform = np.linspace(0, num_video_frames - 1, num_frames).astype(np.int64)
    if mode == "uniform" or num_frames < 3:
        return uniform
    steps = np.diff(uniform)  # (F - 1,), each >= 1 since N >= F
    low = 1 - steps[:-1]  # interior index i may move back to just after u_{i-1} ...
    high = steps[1:]  # ... and forward to just before u_{i+1} (high is exclusive)
    indices = uniform.copy()
    indices[1:-1] += rng.integers(low, high)
    return np.sort(indices)


def sample_frame_pair(num_video_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Two frame indices for a stage-one (LFAE) pair: drawn with replacement, sorted, so the reference (first) is
    never later than the driving frame (second); they may be equal. int64 (2,)."""
    _check(num_video_frames, 2, "uniform")
    return np.sort(rng.integers(0, num_video_frames, size=2))
