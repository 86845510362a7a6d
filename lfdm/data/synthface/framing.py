"""SynthFace's framing, measured: where its faces' eyes sit in the frame (`lfdm.framing.ModelFraming`).

Training calls `measure_framing` once and saves the result with the model (`lfdm.data.factory.dataset_framing`);
inference never renders SynthFace: it reads the saved framing, or `lfdm.framing.SYNTHFACE_FRAMING`, these numbers
kept as constants for models saved before framings were recorded.
"""

from __future__ import annotations

import numpy as np

from lfdm.data.synthface.identity import landmarks, sample_identity
from lfdm.framing import EYE_MEASURES, ModelFraming, eye_measures


def measure_framing(num_identities: int = 512) -> ModelFraming:
    """The face framing of SynthFace's first `num_identities` identities at rest: the mean eye centres as the target,
    and the range (min, max) of eye distance, angle and midpoint over them, all as fractions of the frame's side."""
    points = np.array([landmarks(sample_identity(seed), 1) for seed in range(num_identities)])  # (N, 3, 2)
    measures = eye_measures(points[:, :2])  # image-left eye, image-right eye
    return ModelFraming(
        kind="face",
        eyes=np.mean(points, axis=0)[:2],
        eye_range={name: (float(measures[name].min()), float(measures[name].max())) for name in EYE_MEASURES},
    )
