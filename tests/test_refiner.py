"""The photo refiner: the network, its place in the pipeline and the photo renderer, and its training command."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from lfdm.cli import main as cli_main
from lfdm.models.refiner import PhotoRefiner
from lfdm.pipeline import LFDMPipeline
from lfdm.testing import make_test_image, make_tiny_pipeline
from lfdm.training.config import RefinerTrainConfig, RunConfig
from lfdm.training.refiner import crop_corners, make_inputs, refiner_loss

STEPS = 2


def _inputs(size: int = 16, batch: int = 2, seed: int = 0):
    """warped, decoded, decoded_start (B, 3, S, S) and new_content (B, 1, S, S), random."""
    generator = torch.Generator().manual_seed(seed)
    images = [torch.rand(batch, 3, size, size, generator=generator) for _ in range(3)]
    return (*images, torch.rand(batch, 1, size, size, generator=generator))


def test_an_untrained_refiner_adds_the_decoders_change_to_the_warp_where_content_is_new():
    warped, decoded, start, new = _inputs()
    output = PhotoRefiner(patch=2, channels=8, num_res_blocks=1)(warped, decoded, start, new)
    torch.testing.assert_close(output.paint, warped + decoded - start)
    torch.testing.assert_close(output.gate, new.clamp(1e-3, 1 - 1e-3))
    torch.testing.assert_close(output.image, warped + output.gate * (decoded - start))
    # where the decoder only moved its picture of frame 0, the warped photo comes back untouched
    still = PhotoRefiner(patch=2, channels=8, num_res_blocks=1)(warped, decoded, decoded, new)
    torch.testing.assert_close(still.image, warped)


def test_the_refiner_refuses_inputs_it_cannot_take():
    refiner = PhotoRefiner(patch=4, channels=8, num_res_blocks=1)
    warped, decoded, start, new = _inputs(size=18)
    with pytest.raises(ValueError, match="multiples of 4"):
        refiner(warped, decoded, start, new)
    warped, decoded, start, new = _inputs()
    with pytest.raises(ValueError, match="new_content must be"):
        refiner(warped, decoded, start, new[:, :, :8])
    with pytest.raises(ValueError, match="must all be"):
        refiner(warped, decoded[:, :1], start, new)


def _trained_looking_refiner(seed: int = 0) -> PhotoRefiner:
    """A refiner whose last layer is not zero, so it paints something of its own."""
    torch.manual_seed(seed)
    refiner = PhotoRefiner(scale=2, patch=2, channels=8, num_res_blocks=1).eval()
    torch.nn.init.normal_(refiner.head.weight, std=0.3)
    return refiner


@pytest.fixture(scope="module")
def refined_pipeline():
    pipe = make_tiny_pipeline()
    pipe.register_modules(refiner=_trained_looking_refiner())
    return pipe


def test_a_pipeline_saves_and_loads_its_refiner_and_one_without_loads_without(tmp_path, refined_pipeline):
    refined_pipeline.save_pretrained(tmp_path / "with")
    loaded = LFDMPipeline.from_pretrained(tmp_path / "with")
    assert isinstance(loaded.refiner, PhotoRefiner)
    for name, value in refined_pipeline.refiner.state_dict().items():
        torch.testing.assert_close(loaded.refiner.state_dict()[name], value)
    plain = make_tiny_pipeline()
    plain.save_pretrained(tmp_path / "without")
    assert LFDMPipeline.from_pretrained(tmp_path / "without").refiner is None


def test_the_refiner_paints_only_photo_size_frames_after_frame_0(refined_pipeline):
    image = make_test_image(48, seed=2)
    plain = make_tiny_pipeline()
    call = dict(num_inference_steps=STEPS, face="none")
    model_size = [pipe(image, "surprise", generator=torch.Generator().manual_seed(1), **call) for pipe in
                  (plain, refined_pipeline)]  # fmt: skip
    np.testing.assert_array_equal(model_size[0].frames, model_size[1].frames)  # the model's own frames: untouched
    photo = [pipe(image, "surprise", generator=torch.Generator().manual_seed(1), resolution=96, **call) for pipe in
             (plain, refined_pipeline)]  # fmt: skip
    np.testing.assert_array_equal(photo[0].frames[:, 0], photo[1].frames[:, 0])  # frame 0 is the photo in both
    assert np.abs(photo[0].frames[:, 1:] - photo[1].frames[:, 1:]).max() > 1e-3, "the refiner painted nothing"
    assert np.isfinite(photo[1].frames).all()
    assert photo[1].frames.min() >= 0 and photo[1].frames.max() <= 1


def test_make_inputs_shapes_and_frame_0_against_itself():
    pipe = make_tiny_pipeline()
    lfae = pipe.lfae
    reference = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    inputs = make_inputs(lfae, reference, reference)
    for name in ("warped", "decoded", "decoded_start", "target"):
        assert getattr(inputs, name).shape == (2, 3, 64, 64)
    assert inputs.new_content.shape == (2, 1, 64, 64)
    assert float(inputs.new_content.max()) < 1e-5, "a frame has nothing new against itself"
    # no displacement: the warp returns the reference's pixels (bicubic at the pixel centres)
    torch.testing.assert_close(inputs.warped, reference, atol=1e-4, rtol=0)
    torch.testing.assert_close(inputs.decoded_start, inputs.decoded, atol=1e-4, rtol=0)  # no change to add
    with pytest.raises(ValueError, match="whole multiple"):
        make_inputs(lfae, reference[..., :60, :60], reference[..., :60, :60])


def test_crops_follow_the_new_content_and_stay_inside():
    new = torch.zeros(3, 1, 64, 64)
    new[:, :, 50:54, 6:10] = 1
    tops, lefts = crop_corners(new, 16, 1.0, torch.Generator().manual_seed(0))
    for top, left in zip(tops, lefts, strict=True):
        assert 0 <= top <= 48 and 0 <= left <= 48
        assert abs(top + 8 - 52) <= 8 and abs(left + 8 - 8) <= 8, "centred near the new content (with jitter)"


def test_the_loss_pays_for_blur():
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    train = RefinerTrainConfig()
    gate = torch.zeros(1, 1, 32, 32)
    sharp_loss = refiner_loss(target, gate, target, train)
    blur_loss = refiner_loss(blurred, gate, target, train)
    assert float(sharp_loss["loss"]) == 0
    assert float(blur_loss["gradient"]) > 0.5 * float(blur_loss["l1"]) > 0


def test_the_config_checks_the_refiner_section():
    with pytest.raises(ValueError, match="multiple of 4"):
        RunConfig.from_dict({"train_refiner": {"crop": 30}})
    config = RunConfig.from_dict({"refiner": {"scale": 2}, "train_refiner": {"max_steps": 3}})
    assert config.to_dict("refiner")["train_refiner"]["max_steps"] == 3


def test_train_refiner_runs_resumes_and_exports(tmp_path, tiny_pipeline_dir):
    config = tmp_path / "refiner.yaml"
    config.write_text(
        "data: {dataset: synthface, resolution: 64, num_frames: 4, num_identities: 4, num_workers: 0}\n"
        "refiner: {scale: 2, patch: 2, channels: 8, num_res_blocks: 1, unfolded_channels: 4}\n"
        "train_refiner: {max_steps: 2, batch_size: 2, crop: 16, pool_size: 4, crops_per_pair: 2, sample_every: 2,"
        " checkpoint_every: 1, log_every: 1, num_samples: 2}\n"
    )
    run, pipeline = tmp_path / "run", tmp_path / "pipeline"
    shutil.copytree(tiny_pipeline_dir, pipeline)
    assert cli_main(["train-refiner", "--config", str(config), "--lfae", str(tiny_pipeline_dir),
                     "--output-dir", str(run), "--into", str(pipeline)]) == 0  # fmt: skip
    assert (run / "samples" / "step-0000002.png").is_file()
    first = PhotoRefiner.from_pretrained(run / "model")
    assert isinstance(LFDMPipeline.from_pretrained(pipeline).refiner, PhotoRefiner), "--into added it"
    assert cli_main(["train-refiner", "--resume", str(run), "--max-steps", "3"]) == 0
    resumed = PhotoRefiner.from_pretrained(run / "model")
    assert any(
        not torch.equal(a, b) for a, b in zip(first.state_dict().values(), resumed.state_dict().values(), strict=True)
    )
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text(config.read_text().replace("resolution: 64", "resolution: 48"))
    assert cli_main(["train-refiner", "--config", str(wrong), "--lfae", str(tiny_pipeline_dir),
                     "--output-dir", str(tmp_path / "wrong")]) == 1  # fmt: skip


def test_add_refiner_lists_it_and_refuses_what_is_not_a_pipeline(tmp_path, tiny_pipeline_dir):
    from lfdm.pipeline import add_refiner

    pipeline, refiner = tmp_path / "pipeline", tmp_path / "refiner"
    shutil.copytree(tiny_pipeline_dir, pipeline)
    _trained_looking_refiner().save_pretrained(refiner)
    before = {path.name: path.read_bytes() for path in (pipeline / "unet").iterdir()}
    add_refiner(pipeline, refiner)
    assert {path.name: path.read_bytes() for path in (pipeline / "unet").iterdir()} == before
    loaded = LFDMPipeline.from_pretrained(pipeline)
    torch.testing.assert_close(loaded.refiner.head.weight, _trained_looking_refiner().head.weight)
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        add_refiner(tmp_path, refiner)
    with pytest.raises(FileNotFoundError, match="holds no refiner"):
        add_refiner(pipeline, tmp_path / "nothing")
