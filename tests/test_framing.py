"""A model's framing (`lfdm.framing`): saved with the pipeline, read back (SynthFace's for folders saved without one),
and followed by `face="auto"`; SynthFace is never rendered at inference time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lfdm import faces
from lfdm.data.transforms import resize_and_pad
from lfdm.framing import MUG_FRAMING, SYNTHFACE_FRAMING, WHOLE_PICTURE, ModelFraming
from lfdm.models.lfae import LatentFlowAutoencoder
from lfdm.pipeline import LFDMPipeline
from lfdm.testing import make_tiny_lfae, make_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "assets" / "examples" / "astronaut.png"


def framed_pipeline(framing: ModelFraming | None) -> LFDMPipeline:
    pipe = make_tiny_pipeline()
    pipe.lfae.register_to_config(framing=None if framing is None else framing.to_config())
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return np.asarray(Image.open(ASTRONAUT).convert("RGB"))


def test_synthface_framing_constants_match_a_fresh_measurement():
    from lfdm.data.synthface.framing import measure_framing

    measured = measure_framing()
    np.testing.assert_allclose(measured.target_eyes(), SYNTHFACE_FRAMING.target_eyes(), rtol=0, atol=1e-12)
    for name, (low, high) in SYNTHFACE_FRAMING.eye_range.items():
        np.testing.assert_allclose(measured.eye_range[name], (low, high), rtol=0, atol=1e-12, err_msg=name)


def test_framing_round_trips_through_its_config_and_rejects_what_it_cannot_read():
    for framing in (SYNTHFACE_FRAMING, MUG_FRAMING, WHOLE_PICTURE):
        saved = json.loads(json.dumps(framing.to_config()))  # as the LFAE's config.json holds it
        assert ModelFraming.from_config(saved) == framing
    assert ModelFraming.from_config(None) == SYNTHFACE_FRAMING, "no framing recorded: SynthFace's"
    with pytest.raises(ValueError, match="kind"):
        ModelFraming.from_config({"kind": "body"})
    with pytest.raises(ValueError, match="eyes"):
        ModelFraming.from_config({"kind": "face", "eye_range": SYNTHFACE_FRAMING.to_config()["eye_range"]})
    with pytest.raises(ValueError, match="whole-picture framing has no"):
        ModelFraming("whole", eyes=((0.3, 0.4), (0.7, 0.4)))
    with pytest.raises(ValueError, match="framing"):
        LatentFlowAutoencoder(image_size=32, framing={"kind": "face"})


@pytest.mark.parametrize("framing", [WHOLE_PICTURE, MUG_FRAMING], ids=["whole", "mug"])
def test_save_pretrained_and_from_pretrained_keep_the_framing(framing, tmp_path):
    framed_pipeline(framing).save_pretrained(tmp_path)
    assert json.loads((tmp_path / "lfae" / "config.json").read_text())["framing"] == framing.to_config()
    assert LFDMPipeline.from_pretrained(tmp_path).framing == framing


def test_a_folder_saved_before_framings_were_recorded_is_synthface_framed(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path)
    config_path = tmp_path / "lfae" / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("framing")  # what every folder written before then holds
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    pipe = LFDMPipeline.from_pretrained(tmp_path)
    assert pipe.framing == SYNTHFACE_FRAMING and pipe.framing.is_face


def test_the_shipped_model_records_synthface_framing():
    config = LatentFlowAutoencoder.load_config(ROOT / "checkpoints" / "lfae")
    assert "framing" in config, "checkpoints/ says how its pictures are framed"
    assert ModelFraming.from_config(config["framing"]) == SYNTHFACE_FRAMING


def test_a_whole_picture_model_animates_the_whole_picture_without_a_face_search(photo, monkeypatch):
    pipe = framed_pipeline(WHOLE_PICTURE)

    def no_search(*args, **kwargs):
        raise AssertionError("a whole-picture model must not search for faces")

    monkeypatch.setattr(faces, "detect_faces", no_search)
    out = pipe(photo, "smile", num_inference_steps=1)
    assert out.face_box is None and out.face_note is None
    np.testing.assert_array_equal(np.round(out.model_input * 255), resize_and_pad(photo, pipe.image_size))
    with pytest.raises(ValueError, match="whole pictures.*face='auto' or 'none'"):
        pipe(photo, "smile", num_inference_steps=1, face="require")


def test_a_face_model_aligns_the_face_to_its_own_eye_targets(photo):
    from lfdm.photo import frame_photo

    for framing in (MUG_FRAMING, SYNTHFACE_FRAMING):
        framed = frame_photo(photo, 64, model_framing=framing, face="require")
        assert framed.face is not None and framed.aligned
        eyes = framed.face.eyes @ framed.matrix[:, :2].T + framed.matrix[:, 2]
        np.testing.assert_allclose(eyes, framing.target_eyes() * 64 - 0.5, atol=1e-9)
    assert framed_pipeline(MUG_FRAMING)(photo, "smile", num_inference_steps=1).face_box is not None


def test_record_framing_writes_the_training_data_framing_once():
    from lfdm.training.lfae import record_framing

    synthface = make_tiny_lfae()
    record_framing(synthface, "synthface")  # measured from SynthFace now, at training time
    assert ModelFraming.from_config(synthface.config["framing"]) == SYNTHFACE_FRAMING
    body = make_tiny_lfae()
    record_framing(body, "natops")
    assert ModelFraming.from_config(body.config["framing"]) == WHOLE_PICTURE
    record_framing(body, "mug")  # a framing the model already has is kept
    assert ModelFraming.from_config(body.config["framing"]) == WHOLE_PICTURE


def test_importing_the_pipeline_and_animating_a_photo_never_renders_synthface(tmp_path):
    make_tiny_pipeline().save_pretrained(tmp_path / "pipe")
    script = f"""
import sys
from lfdm.pipeline import load_pipeline
pipe = load_pipeline({str(tmp_path / "pipe")!r}, device="cpu", dtype="float32")
pipe.set_progress_bar_config(disable=True)
out = pipe({str(ASTRONAUT)!r}, "smile", num_inference_steps=1, resolution="input")
assert out.face_box is not None, "the tiny model is SynthFace-framed: it animates the face"
print(sorted(name for name in sys.modules if "synthface" in name))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]", f"SynthFace was imported: {result.stdout}"


def test_the_app_hides_find_the_face_for_a_whole_picture_model(tmp_path):
    from lfdm.app.service import GenerationService
    from lfdm.app.ui import _Handlers

    framed_pipeline(WHOLE_PICTURE).save_pretrained(tmp_path / "whole")
    make_tiny_pipeline().save_pretrained(tmp_path / "face")
    models = {"whole": str(tmp_path / "whole"), "face": str(tmp_path / "face")}
    service = GenerationService(models, "whole", work_dir=tmp_path / "requests")
    handlers = _Handlers(service)
    _, _, _, find_face, *_ = handlers.page_loaded()
    assert find_face.visible is False and find_face.value is False, "a whole-picture model searches for no face"
    _, _, _, find_face, *_ = handlers.choose_model("face")
    assert find_face.visible is True and find_face.value is True
    preview = service.find_face(ASTRONAUT, True, "whole")
    assert preview.face_box is None and "whole pictures" in preview.note
