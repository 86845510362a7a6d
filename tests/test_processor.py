"""`lfdm.processor.LFDMProcessor`: picture in (read, frame), video out (render at size, output type), and the
pipeline's own processor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm import faces
from lfdm.framing import SYNTHFACE_FRAMING, WHOLE_PICTURE
from lfdm.images import preprocess_image
from lfdm.processor import LFDMProcessor
from lfdm.testing import make_tiny_pipeline

ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


def test_a_whole_picture_model_gets_the_padded_picture_without_a_face_search(photo, monkeypatch):
    def no_search(*args, **kwargs):
        raise AssertionError("a whole-picture model must not search for faces")

    monkeypatch.setattr(faces, "detect_faces", no_search)
    framing, pixels = LFDMProcessor(32, WHOLE_PICTURE).preprocess(photo[:, :200])
    assert framing.face is None and not framing.aligned
    assert pixels.shape == (1, 3, 32, 32) and pixels.dtype == torch.float32
    assert torch.equal(pixels, preprocess_image(photo[:, :200], 32)), "the whole picture, resized and padded"


def test_a_face_model_gets_the_aligned_face(photo):
    processor = LFDMProcessor(32, SYNTHFACE_FRAMING)
    framing, pixels = processor.preprocess(photo)
    assert framing.face is not None and framing.aligned, "the astronaut's face is found and aligned"
    assert pixels.shape == (1, 3, 32, 32) and 0 <= pixels.min() and pixels.max() <= 1
    assert torch.equal(pixels, framing.model_tensor())
    assert not torch.equal(pixels, preprocess_image(photo, 32)), "a face crop, not the whole picture"
    whole, whole_pixels = processor.preprocess(photo, face="none")
    assert whole.face is None and torch.equal(whole_pixels, preprocess_image(photo, 32))


def test_postprocess_gives_the_output_type():
    tensor = torch.rand(1, 2, 4, 4, 3)
    array = LFDMProcessor.postprocess(tensor, "np")
    assert isinstance(array, np.ndarray) and np.array_equal(array, tensor.numpy())
    assert LFDMProcessor.postprocess(tensor, "pt") is tensor
    labels = ["smile"]
    assert LFDMProcessor.postprocess(labels, "np") is labels and LFDMProcessor.postprocess(None, "np") is None
    with pytest.raises(ValueError, match="output_type"):
        LFDMProcessor.postprocess(tensor, "pil")


def test_render_draws_the_video_at_the_photos_aspect_and_size(photo):
    processor = LFDMProcessor(32, WHOLE_PICTURE)
    framing, _ = processor.preprocess(photo[:200, :300])  # 300 x 200: the video keeps 3:2
    identity = torch.stack(torch.meshgrid(torch.linspace(-1, 1, 8), torch.linspace(-1, 1, 8), indexing="xy"), -1)
    flows = identity.expand(1, 2, 8, 8, 2)  # nothing moves
    occlusions = torch.ones(1, 2, 8, 8)
    model_frames = torch.rand(1, 2, 32, 32, 3)
    common = dict(framing=framing, flows=flows, occlusions=occlusions, model_frames=model_frames)
    assert processor.render(**common) is model_frames, "resolution=None: the model's own frames"
    assert processor.render(**common, resolution=90).shape == (1, 2, 60, 90, 3)
    assert processor.render(**common, resolution="input").shape == (1, 2, 200, 300, 3)
    capped = processor.render(**common, resolution="input", max_resolution=150)
    assert capped.shape == (1, 2, 100, 150, 3), "max_resolution caps the long side"
    assert capped.min() >= 0 and capped.max() <= 1
    torch.testing.assert_close(capped[:, 1], capped[:, 0], msg="flows that do not move leave the photo still")


def test_driving_frames_are_used_as_they_are_for_a_whole_picture_model():
    video = np.random.default_rng(0).integers(0, 256, (3, 40, 60, 3), dtype=np.uint8)
    frames, found = LFDMProcessor(32, WHOLE_PICTURE).frame_driving(video)
    assert found is None and frames.shape == (3, 3, 32, 32)
    assert torch.equal(frames[1], preprocess_image(video[1], 32)[0]), "each frame resized and padded like a picture"
    with pytest.raises(ValueError, match="no face"):
        LFDMProcessor(32, SYNTHFACE_FRAMING).frame_driving(video)  # noise has no face to follow
    _, found = LFDMProcessor(32, SYNTHFACE_FRAMING).frame_driving(video, driving_face="none")
    assert found is None


def test_the_pipeline_owns_a_processor_that_is_not_saved(tmp_path):
    pipe = make_tiny_pipeline()
    assert isinstance(pipe.processor, LFDMProcessor)
    assert pipe.processor.image_size == pipe.image_size and pipe.processor.framing == pipe.framing
    with pytest.raises(ValueError, match="driving_face"):
        pipe.processor.check_inputs(face="auto", resolution=None, max_resolution=64, output_type="np", driving_face="x")
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert "processor" not in index and not (tmp_path / "processor").exists()


def test_the_processor_follows_a_framing_written_after_loading():
    pipe = make_tiny_pipeline()
    assert pipe.processor.framing.is_face
    pipe.lfae.register_to_config(framing=WHOLE_PICTURE.to_config())
    assert pipe.processor.framing == WHOLE_PICTURE and pipe.processor is pipe.processor, "made once per framing"
