"""The pipeline shipped in `checkpoints/` (what `python app.py` loads by default) loads offline and generates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.data.synthetic import SYNTHFACE_LABELS
from lfdm.evaluation.classifier import ActionClassifier
from lfdm.images import preprocess_image
from lfdm.metrics import psnr
from lfdm.pipeline import load_pipeline

CHECKPOINTS = Path(__file__).resolve().parents[1] / "checkpoints"
EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "assets" / "examples").glob("synthface_*.png"))
ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def shipped():
    return load_pipeline(CHECKPOINTS, device="cpu")


def test_shipped_pipeline_has_the_synthface_config(shipped):
    assert shipped.labels == list(SYNTHFACE_LABELS), "the app offers the labels saved with the model"
    assert shipped.image_size == 64 and shipped.latent_size == 16 and shipped.num_frames == 16
    assert type(shipped.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert shipped.scheduler.config.prediction_type == "sample", "the U-Net was trained to predict z_0"
    assert shipped.unet.config.residual_flow and shipped.unet.config.frame_embedding
    assert (CHECKPOINTS / "README.md").is_file(), "the model card ships with the weights"


def test_shipped_pipeline_generates_from_an_example_image(shipped):
    assert EXAMPLES, "assets/examples/ holds the app's example images"
    image = Image.open(EXAMPLES[0])
    out = shipped(image, ["happiness", "surprise"], num_inference_steps=3, num_frames=4)
    assert out.frames.shape == (2, 4, 64, 64, 3)
    assert out.flows.shape == (2, 4, 16, 16, 2) and out.occlusions.shape == (2, 4, 16, 16)
    assert np.isfinite(out.frames).all() and 0 <= out.frames.min() and out.frames.max() <= 1
    assert out.occlusions.min() >= 0 and out.occlusions.max() <= 1


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.stem)
def test_shipped_pipeline_makes_recognisable_expressions_from_a_still_start(shipped, example):
    image, labels = Image.open(example), shipped.labels
    out = shipped(image, labels, num_inference_steps=10, generator=torch.Generator().manual_seed(0), output_type="pt")
    videos = out.frames.permute(0, 4, 1, 2, 3).float()  # (labels, 3, frames, 64, 64)
    classifier = ActionClassifier.from_pretrained(CHECKPOINTS / "eval" / "action_classifier").eval()
    predicted = [classifier.labels[i] for i in classifier.predict(videos).logits.argmax(-1)]
    assert predicted == labels, "the shipped classifier names every label on every example image"
    reference = preprocess_image(image, shipped.image_size)  # the 64 px input the pipeline animates
    first = psnr(videos[:, :, 0], reference.expand(len(labels), -1, -1, -1))
    # the project's target is >= 30 dB on average; the shipped model: 32.7-35.2 dB per example image, 29.7 at least
    assert first.mean() >= 32 and first.min() >= 29, f"frame 0 must be the input face: {first.tolist()} dB"


def test_shipped_pipeline_animates_the_face_of_a_real_photo_at_the_photos_size(shipped):
    photo = np.array(Image.open(ASTRONAUT).convert("RGB"))
    out = shipped(
        photo, ["happiness", "surprise"], num_inference_steps=10, generator=torch.Generator().manual_seed(0),
        resolution="input", output_type="pt",
    )  # fmt: skip
    assert out.frames.shape == (2, 16, 320, 320, 3) and out.face_box is not None
    reference = torch.from_numpy(photo).float() / 255
    first = psnr(out.frames[:, 0].permute(0, 3, 1, 2), reference.permute(2, 0, 1).expand(2, -1, -1, -1))
    assert first.min() >= 33, f"frame 0 is the photo: {first.tolist()} dB"
    x0, y0, x1, y1 = out.face_box
    side = x1 - x0
    ys, xs = torch.meshgrid(torch.arange(320), torch.arange(320), indexing="ij")
    # farther than one face side from the face box: the shoulders, the flag, the background
    far = (xs < x0 - side) | (xs >= x1 + side) | (ys >= y1 + side)
    change = (out.frames - out.frames[:, :1]).abs().amax(dim=(1, 4))  # (2, 320, 320) over frames and colours
    assert far.float().mean() > 0.25 and change[:, far].max() <= 1.5 / 255, "nothing far from the face moves"
    inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
    moved = (out.frames[:, -1] - out.frames[:, 0]).abs().mean(-1)[:, inside].mean(-1)
    assert (moved > 0.02).all(), f"the face visibly moves: mean change {moved.tolist()} in the face box"
