"""The pipeline shipped in `checkpoints/` (what `python app.py` loads by default) loads offline and generates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdm.data.synthetic import SYNTHFACE_LABELS
from lfdm.pipeline import load_pipeline

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("*.png"))


@pytest.fixture(scope="module")
def shipped():
    return load_pipeline(CHECKPOINTS, device="cpu")


def test_shipped_pipeline_has_the_synthface_config(shipped):
    assert shipped.labels == list(SYNTHFACE_LABELS), "the app offers the labels saved with the model"
    assert shipped.image_size == 64 and shipped.latent_size == 16 and shipped.num_frames == 16
    assert type(shipped.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert (CHECKPOINTS / "README.md").is_file(), "the model card ships with the weights"


def test_shipped_pipeline_generates_from_an_example_image(shipped):
    assert EXAMPLES, "assets/examples/ holds the app's example images"
    image = Image.open(EXAMPLES[0])
    out = shipped(image, ["happiness", "surprise"], num_inference_steps=3, num_frames=4)
    assert out.frames.shape == (2, 4, 64, 64, 3)
    assert out.flows.shape == (2, 4, 16, 16, 2) and out.occlusions.shape == (2, 4, 16, 16)
    assert np.isfinite(out.frames).all() and 0 <= out.frames.min() and out.frames.max() <= 1
    assert out.occlusions.min() >= 0 and out.occlusions.max() <= 1
