"""Does a generated motion look like its label? Flows compared with the label-typical flows of SynthFace faces.

A video's *displacement* is its flow minus frame 0's flow: (F, h, w, 2) in grid units (the image is 2 wide), zero
at frame 0, so it says how each point moved since the first frame whatever the model's resting grid is. For a set
of reference faces, the *typical displacement* of a label is the mean of its videos' displacements. A generated
video of label y then

- **matches** when its displacement is more similar (cosine similarity of the flattened fields) to y's typical
  displacement than to any other label's;
- has **energy** = its mean displacement magnitude / the mean magnitude of y's reference videos (1 = as much
  motion as on SynthFace's own faces).

Both are measured in the model's frame: for a photo, on the aligned face crop the model animated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


def displacement(flows: np.ndarray) -> np.ndarray:
    """flows (..., F, h, w, 2) absolute sampling grids -> (..., F, h, w, 2), each frame minus frame 0."""
    flows = np.asarray(flows, np.float64)
    return flows - flows[..., :1, :, :, :]


def magnitude(displacements: np.ndarray) -> float:
    """Mean length of the displacement vectors (grid units)."""
    return float(np.linalg.norm(np.asarray(displacements, np.float64), axis=-1).mean())


@dataclass(frozen=True)
class LabelMotion:
    """The typical motion of each label on the reference faces."""

    mean: dict[str, np.ndarray]  # label -> mean displacement (F, h, w, 2)
    energy: dict[str, float]  # label -> mean displacement magnitude of the reference videos

    @classmethod
    def from_videos(cls, flows_by_label: Mapping[str, list[np.ndarray]]) -> LabelMotion:
        """label -> list of flows (F, h, w, 2), one per reference video."""
        mean, energy = {}, {}
        for label, flows in flows_by_label.items():
            moved = np.stack([displacement(flow) for flow in flows])
            mean[label] = moved.mean(0)
            energy[label] = float(np.mean([magnitude(video) for video in moved]))
        return cls(mean, energy)

    @property
    def labels(self) -> list[str]:
        return list(self.mean)


@dataclass(frozen=True)
class MotionScore:
    """How the motions generated from one picture compare with the reference."""

    similarity: np.ndarray  # (L, L): row = generated label, column = reference label, cosine similarity
    labels: list[str]
    energy: dict[str, float]  # generated label -> magnitude / the reference's magnitude of that label

    @property
    def matches(self) -> dict[str, bool]:
        best = self.similarity.argmax(1)
        return {label: bool(best[index] == index) for index, label in enumerate(self.labels)}

    @property
    def num_matches(self) -> int:
        return sum(self.matches.values())

    @property
    def mean_energy(self) -> float:
        return float(np.mean(list(self.energy.values())))


def score_motion(reference: LabelMotion, flows_by_label: Mapping[str, np.ndarray]) -> MotionScore:
    """label -> generated flows (F, h, w, 2) (or several videos (N, F, h, w, 2), averaged) -> `MotionScore`."""
    labels = reference.labels
    similarity = np.zeros((len(labels), len(labels)))
    energy = {}
    for row, label in enumerate(labels):
        moved = displacement(flows_by_label[label])
        if moved.ndim == 5:  # several videos of the label: their mean motion, and their mean magnitude
            energy[label] = float(np.mean([magnitude(video) for video in moved])) / reference.energy[label]
            moved = moved.mean(0)
        else:
            energy[label] = magnitude(moved) / reference.energy[label]
        for column, other in enumerate(labels):
            similarity[row, column] = _cosine(moved, reference.mean[other])
    return MotionScore(similarity, labels, energy)


def _cosine(first: np.ndarray, second: np.ndarray) -> float:
    first, second = first.ravel(), second.ravel()
    norm = np.linalg.norm(first) * np.linalg.norm(second)
    return float(first @ second / norm) if norm > 0 else 0.0
