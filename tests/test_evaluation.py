"""Evaluating generated videos: the action classifier, Fréchet distances, FVD plumbing, `python -m lfdm evaluate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.cli import main
from lfdm.data.synthetic import SYNTHFACE_LABELS, SynthFaceDataset, render_video
from lfdm.evaluation.accuracy import accuracy_report
from lfdm.evaluation.classifier import ActionClassifier, resample_clip
from lfdm.evaluation.frechet import (
    FeatureStatistics,
    frechet_distance,
    frechet_distance_of_features,
    i3d_features,
    load_i3d,
)
from lfdm.evaluation.generation import SamplerSetting, parse_sampler_settings, synthface_cases
from lfdm.evaluation.train_classifier import (
    ClassifierTrainConfig,
    ClipPool,
    augment_clips,
    build_clip_pool,
    train_classifier,
)
from lfdm.testing import make_tiny_pipeline

LABELS = list(SYNTHFACE_LABELS)
SHIPPED_CLASSIFIER = Path(__file__).parents[1] / "checkpoints" / "eval" / "action_classifier"
TINY = {"num_frames": 4, "input_size": 16, "channels": (4, 8)}


def tiny_classifier(seed: int = 0, labels=LABELS) -> ActionClassifier:
    torch.manual_seed(seed)
    return ActionClassifier(labels=list(labels), **TINY).eval()


# --- the classifier ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(2, 3, 4, 32, 32), (3, 3, 16, 64, 64), (1, 3, 2, 16, 16)])
def test_classifier_gives_logits_and_features_for_any_clip_size(shape):
    out = ActionClassifier(labels=LABELS)(torch.rand(shape))
    assert out.logits.shape == (shape[0], 7), "one logit per label"
    assert out.features.shape == (shape[0], 128), "features are the last block's width"
    assert (out.features >= 0).all(), "features are pooled ReLU activations"


def test_resample_clip_keeps_first_and_last_frames():
    video = torch.arange(10.0).view(1, 1, 10, 1, 1).expand(1, 3, 10, 8, 8)
    clip = resample_clip(video, 4, 4)
    assert clip.shape == (1, 3, 4, 4, 4)
    assert clip[0, 0, :, 0, 0].tolist() == [0, 3, 6, 9]


def test_classifier_save_and_load_round_trip(tmp_path):
    classifier = tiny_classifier()
    videos = torch.rand(2, 3, 4, 32, 32)
    classifier.save_pretrained(tmp_path / "clf")
    loaded = ActionClassifier.from_pretrained(tmp_path / "clf").eval()
    assert loaded.labels == LABELS
    torch.testing.assert_close(loaded(videos).logits, classifier(videos).logits)


def test_a_video_scores_the_same_alone_and_in_a_batch():
    classifier = tiny_classifier()
    videos = torch.rand(3, 3, 4, 32, 32)
    alone = classifier.predict(videos[:1]).logits
    batched = classifier.predict(videos, batch_size=3).logits[:1]
    torch.testing.assert_close(alone, batched, msg="GroupNorm: no batch statistics in a score")


def test_classifier_rejects_images():
    with pytest.raises(ValueError, match=r"\(B, 3, F, H, W\)"):
        tiny_classifier()(torch.rand(2, 3, 32, 32))


def test_shipped_classifier_names_the_actions_of_real_test_videos():
    classifier = ActionClassifier.from_pretrained(SHIPPED_CLASSIFIER).eval()
    case = next(synthface_cases("test", 1, resolution=64, num_frames=16, seed=0))
    predicted = [classifier.labels[i] for i in classifier.predict(case.real).logits.argmax(dim=1)]
    assert predicted == case.labels, "the committed classifier reads every SynthFace expression"
    still = case.real[:, :, :1].expand_as(case.real)
    assert all(classifier.labels[i] == "neutral" for i in classifier.predict(still).logits.argmax(dim=1))


# --- training ---------------------------------------------------------------------------------------------------------


def toy_pool(count: int = 64) -> ClipPool:
    """Label 0: the picture brightens over time; label 1: it darkens."""
    labels = torch.arange(count) % 2
    start = torch.randint(60, 190, (count, 1, 1, 1, 1), generator=torch.Generator().manual_seed(0))
    ramp = torch.arange(4).view(1, 1, 4, 1, 1) * 20 * (1 - 2 * labels.view(count, 1, 1, 1, 1))
    videos = (start + ramp).expand(count, 3, 4, 16, 16).to(torch.uint8)
    return ClipPool(videos, labels)


def test_a_few_training_steps_reduce_the_loss():
    classifier = tiny_classifier(labels=["right", "down"])
    config = ClassifierTrainConfig(steps=60, batch_size=16, warmup_steps=5, log_every=20, learning_rate=2e-2)
    history = train_classifier(classifier, toy_pool(), config, progress=False)
    assert len(history.losses) == 3
    assert history.losses[-1] < 0.8 * history.losses[0], f"loss did not fall: {history.losses}"
    assert not classifier.training, "a trained classifier is left in eval mode"


def test_augmentation_keeps_shape_and_range():
    videos = torch.rand(6, 3, 4, 16, 16)
    config = ClassifierTrainConfig(blur_probability=1.0)
    augmented = augment_clips(videos, config, torch.Generator().manual_seed(0))
    assert augmented.shape == videos.shape
    assert 0 <= augmented.min() and augmented.max() <= 1
    assert not torch.allclose(augmented, videos)


def test_clip_pool_holds_synthface_clips_at_the_classifier_input():
    dataset = SynthFaceDataset("train", resolution=32, num_frames=6, length=3)
    pool = build_clip_pool(dataset, tiny_classifier(), 5)
    assert pool.videos.shape == (5, 3, 4, 16, 16) and pool.videos.dtype == torch.uint8
    expected = []
    for epoch, count in ((0, 3), (1, 2)):  # a second pass over the data set reads its next epoch
        dataset.set_epoch(epoch)
        expected += [dataset[index]["label_index"] for index in range(count)]
    assert pool.labels.tolist() == expected


def test_clip_pool_stores_the_classifier_index_of_each_label_name():
    dataset = SynthFaceDataset("test", resolution=32, num_frames=4, num_identities=1, labels=["wink", "happiness"])
    classifier = ActionClassifier(labels=["happiness", "wink"], num_frames=4, input_size=16, channels=(4, 8))
    pool = build_clip_pool(dataset, classifier)
    assert pool.labels.tolist() == [1, 0], "wink is the classifier's label 1 though the data set lists it first"
    with pytest.raises(ValueError, match="does not know"):
        build_clip_pool(SynthFaceDataset("test", resolution=32, num_frames=4, num_identities=1), classifier, 1)


def test_train_classifier_command_learns_a_chosen_label_list_with_an_extra_action(tmp_path):
    out = tmp_path / "action_classifier"
    labels = [*SYNTHFACE_LABELS, "wink"]
    args = ["train-classifier", "--labels", *labels, "--steps", "2", "--batch-size", "4", "--pool-size", "8",
            "--test-identities", "1", "--resolution", "32", "--video-frames", "4", "--num-frames", "4",
            "--input-size", "16", "--channels", "4,8", "--out", str(out), "--card", "none"]  # fmt: skip
    assert main(args) == 0
    assert ActionClassifier.from_pretrained(out).labels == labels
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["labels"] == labels and summary["test"]["count"] == 8, "one test face x 8 labels"
    assert "--labels " + " ".join(labels) in summary["command"], "the command can be run again as written"


def test_accuracy_report_counts_per_label_and_confusions():
    report = accuracy_report(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2]), ["a", "b", "c", "d"])
    assert report.accuracy == 0.75 and report.count == 4
    assert report.per_label == {"a": 1.0, "b": 1.0, "c": 0.5}, "labels without videos are left out"
    assert report.confusion[2] == [0, 1, 1, 0], "row: true label, column: predicted"


def test_train_classifier_command_writes_model_summary_and_card(tmp_path):
    out = tmp_path / "eval" / "action_classifier"
    args = ["train-classifier", "--steps", "3", "--batch-size", "4", "--pool-size", "8", "--test-identities", "1",
            "--resolution", "32", "--video-frames", "4", "--num-frames", "4", "--input-size", "16",
            "--channels", "4,8", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    assert ActionClassifier.from_pretrained(out).labels == LABELS
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["test"]["count"] == 7 and 0 <= summary["test"]["accuracy"] <= 1
    assert "--steps 3" in summary["command"]
    card = (tmp_path / "eval" / "README.md").read_text()
    assert "Accuracy on real test videos" in card and "not FVD" in card
    assert "32 px, 4 frames" in card and "64 px" not in card, "the card says the sizes the run read"


# --- Fréchet distances ------------------------------------------------------------------------------------------------


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance_of_features(features, features) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift():
    features = np.random.default_rng(0).normal(size=(500, 8))
    shift = np.array([1.0, -2.0, 0, 0, 0.5, 0, 0, 0])
    assert frechet_distance_of_features(features, features + shift) == pytest.approx(np.sum(shift**2), rel=1e-6)


def test_frechet_distance_of_known_gaussians():
    # N(0, I) vs N(m, 4 I) in D dims: |m|^2 + D (1 + 4 - 2 sqrt(4)) = |m|^2 + D
    dims, mean = 5, np.full(5, 0.5)
    first = FeatureStatistics(np.zeros(dims), np.eye(dims), 1000)
    second = FeatureStatistics(mean, 4 * np.eye(dims), 1000)
    assert frechet_distance(first, second) == pytest.approx(np.sum(mean**2) + dims)
    rng = np.random.default_rng(1)
    sampled = frechet_distance_of_features(rng.normal(size=(20_000, dims)), mean + 2 * rng.normal(size=(20_000, dims)))
    assert sampled == pytest.approx(np.sum(mean**2) + dims, rel=0.05)


def test_frechet_distance_with_fewer_videos_than_dimensions_is_finite():
    rng = np.random.default_rng(0)
    distance = frechet_distance_of_features(rng.normal(size=(10, 32)), rng.normal(size=(10, 32)))
    assert np.isfinite(distance) and distance > 0


def test_frechet_distance_needs_two_samples():
    with pytest.raises(ValueError, match="N >= 2"):
        frechet_distance_of_features(np.ones((1, 4)), np.ones((3, 4)))


# --- FVD with a stand-in I3D ------------------------------------------------------------------------------------------


class StandInI3D(torch.nn.Module):
    """Called like the common i3d_torchscript.pt; its 'features' describe the input it got."""

    def forward(self, x: torch.Tensor, rescale: bool = True, resize: bool = True, return_features: bool = False):
        flags = float(rescale) + 2 * float(resize) + 4 * float(return_features)
        batch = x.shape[0]
        size = torch.full((batch,), float(x.shape[-1]))
        return torch.stack([x.flatten(1).amin(1), x.flatten(1).amax(1), size, torch.full((batch,), flags)], dim=1)


@pytest.fixture
def i3d_file(tmp_path):
    path = tmp_path / "i3d_torchscript.pt"
    torch.jit.script(StandInI3D()).save(str(path))
    return path


def test_i3d_gets_224_px_input_in_minus_one_to_one(i3d_file):
    detector = load_i3d(i3d_file)
    videos = torch.zeros(3, 3, 4, 32, 32)
    videos[:, :, :, :16] = 1.0
    features = i3d_features(detector, videos, batch_size=2)
    assert features.shape == (3, 4)
    assert features[:, 0].tolist() == [-1, -1, -1] and features[:, 1].tolist() == [1, 1, 1]
    assert features[:, 2].tolist() == [224] * 3
    assert features[:, 3].tolist() == [4] * 3, "called with rescale=False, resize=False, return_features=True"


def test_missing_i3d_file_says_what_to_pass(tmp_path):
    with pytest.raises(FileNotFoundError, match="i3d_torchscript.pt"):
        load_i3d(tmp_path / "nothing.pt")


# --- sampler settings and test cases ----------------------------------------------------------------------------------


def test_sampler_configs_cross_guidance_scales():
    settings = parse_sampler_settings("ddpm:1000,dpmsolver:25,ddim::3.0,dpmsolver", "1.0,2.0")
    assert settings == [
        SamplerSetting("ddpm", 1000, 1.0),
        SamplerSetting("ddpm", 1000, 2.0),
        SamplerSetting("dpmsolver", 25, 1.0),
        SamplerSetting("dpmsolver", 25, 2.0),
        SamplerSetting("ddim", 50, 3.0),
    ], "a repeated config is kept once; a config's own guidance replaces the list"


@pytest.mark.parametrize("configs", ["euler:10", "ddim:0", "ddim:5:1:2", ""])
def test_bad_sampler_configs_are_refused(configs):
    with pytest.raises(ValueError):
        parse_sampler_settings(configs)


def test_synthface_cases_start_every_label_from_the_same_neutral_frame():
    case = next(synthface_cases("test", 1, resolution=32, num_frames=4))
    assert case.labels == LABELS and case.real.shape == (7, 3, 4, 32, 32)
    assert torch.equal(case.real[:, :, 0], case.image[None].expand(7, -1, -1, -1)), "frame 0 is shared"


# --- python -m lfdm evaluate ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluation_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluation")
    make_tiny_pipeline(labels=SYNTHFACE_LABELS, num_frames=4, image_size=32).save_pretrained(folder / "model")
    tiny_classifier().save_pretrained(folder / "classifier")
    return folder


SAMPLER_KEYS = {"scheduler", "steps", "guidance", "action_accuracy", "per_label_accuracy", "fcd", "fcd_ratio",
                "frame0_psnr", "seconds_per_video", "num_videos", "fvd"}  # fmt: skip


def run_evaluate(models, out, *extra, configs="ddim:2,dpmsolver:2"):
    args = ["evaluate", "--model", str(models / "model"), "--classifier", str(models / "classifier"), "--configs",
            configs, "--guidance", "1.0", "--device", "cpu", "--out", str(out), *extra]  # fmt: skip
    assert main(args) == 0
    return json.loads(out.read_text())


def test_evaluate_writes_every_score_for_every_sampler(evaluation_models, tmp_path):
    markdown = tmp_path / "table.md"
    record = run_evaluate(
        evaluation_models, tmp_path / "scores.json", "--num-identities", "2", "--markdown", str(markdown)
    )
    assert [(s["scheduler"], s["steps"]) for s in record["samplers"]] == [("ddim", 2), ("dpmsolver", 2)]
    for scores in record["samplers"]:
        assert set(scores) == SAMPLER_KEYS
        assert 0 <= scores["action_accuracy"] <= 1 and scores["num_videos"] == 14
        assert np.isfinite(scores["fcd"]) and scores["frame0_psnr"] > 5 and scores["seconds_per_video"] > 0
        assert scores["fvd"] is None, "no FVD without I3D weights"
    assert record["num_videos"] == 14 and record["labels"] == LABELS
    assert record["fcd_floor"] > 0 and record["fvd_floor"] is None
    assert 0 <= record["classifier_real_accuracy"] <= 1
    assert record["lfae_reconstruction"]["psnr"] > 0 and record["lfae_copy_frame_0"]["psnr"] > 0
    assert 0 <= record["lfae_reconstruction_accuracy"] <= 1 and np.isfinite(record["lfae_reconstruction_fcd"])
    assert set(record["lfae_reconstruction_per_label"]) == set(LABELS)
    assert "not FVD" in record["frechet_distance"]
    text = markdown.read_text()
    assert text.startswith("| sampler |") and "| ddim | 2 | 1 |" in text
    assert f"accuracy {record['lfae_reconstruction_accuracy'] * 100:.1f} %" in text


def test_evaluate_judges_the_labels_asked_for_and_refuses_unknown_ones(evaluation_models, tmp_path, capsys):
    record = run_evaluate(evaluation_models, tmp_path / "some.json", "--num-identities", "2", "--labels", "fear",
                          "surprise", configs="ddim:1")  # fmt: skip
    assert record["labels"] == ["fear", "surprise"] and record["num_videos"] == 4
    assert set(record["samplers"][0]["per_label_accuracy"]) == {"fear", "surprise"}
    models = evaluation_models
    args = ["evaluate", "--model", str(models / "model"), "--classifier", str(models / "classifier"),
            "--labels", "wink", "--out", str(tmp_path / "none.json")]  # fmt: skip
    assert main(args) == 1
    assert "are not labels of the model" in capsys.readouterr().err


def test_the_same_seed_gives_the_same_scores(evaluation_models, tmp_path):
    first = run_evaluate(evaluation_models, tmp_path / "a.json", "--num-identities", "2", configs="ddim:1")
    second = run_evaluate(evaluation_models, tmp_path / "b.json", "--num-identities", "2", configs="ddim:1")
    assert [s["fcd"] for s in first["samplers"]] == [s["fcd"] for s in second["samplers"]]


def test_evaluate_chooses_the_default_steps_after_the_table(evaluation_models, tmp_path, capsys):
    args = ["evaluate", "--model", str(evaluation_models / "model"), "--classifier",
            str(evaluation_models / "classifier"), "--configs", "ddim:2,ddim:1", "--guidance", "1.0", "--device", "cpu",
            "--num-identities", "2", "--out", str(tmp_path / "scores.json")]  # fmt: skip
    assert main([*args, "--write-default"]) == 1
    assert "pass both" in capsys.readouterr().err, "--write-default alone is refused before any sampling"
    code = main([*args, "--choose-default"])
    out = capsys.readouterr().out
    assert "verdict" in out and "reference ddim:2" in out, out
    # the random tiny model rarely reaches the bar: exit 1 then, 0 with a choice
    assert code == (0 if "default: ddim:" in out else 1)


def test_evaluate_reports_fvd_with_i3d_weights(evaluation_models, tmp_path, i3d_file):
    record = run_evaluate(
        evaluation_models, tmp_path / "s.json", "--num-identities", "2", "--i3d-weights", str(i3d_file)
    )
    assert record["fvd_floor"] is not None and all(s["fvd"] is not None for s in record["samplers"])


def write_mug_folder(root, subjects, labels):
    """SynthFace renders as frame folders in the MUG layout: subject/expression/take/img_*.png."""
    for number, subject in enumerate(subjects):
        for label in labels:
            take = root / subject / label / "take000"
            take.mkdir(parents=True)
            for index, frame in enumerate(render_video(number, label, 0, resolution=32, num_frames=6)):
                Image.fromarray(frame).save(take / f"img_{index:03d}.png")


def test_evaluate_and_train_classifier_read_real_data_layouts(evaluation_models, tmp_path):
    root = tmp_path / "MUG"
    write_mug_folder(root, ["001", "002", "008"], ["happiness", "surprise"])  # 001, 002: test; 008: train
    record = run_evaluate(
        evaluation_models, tmp_path / "mug.json", "--data", "mug", "--data-root", str(root), configs="ddim:1"
    )
    assert record["data"] == "mug" and record["num_videos"] == 4 and record["labels"] == ["happiness", "surprise"]
    out = tmp_path / "mug_classifier"
    args = ["train-classifier", "--data", "mug", "--data-root", str(root), "--steps", "2", "--batch-size", "2",
            "--pool-size", "4", "--resolution", "32", "--video-frames", "4", "--num-frames", "4",
            "--input-size", "16", "--channels", "4,8", "--out", str(out), "--card", "none"]  # fmt: skip
    assert main(args) == 0
    assert ActionClassifier.from_pretrained(out).labels[:2] == ["anger", "disgust"], "the preset's label list"
    assert not (tmp_path / "README.md").exists()


def test_evaluate_needs_a_classifier(evaluation_models, tmp_path, capsys):
    args = ["evaluate", "--model", str(evaluation_models / "model"), "--classifier", str(tmp_path / "none")]
    assert main(args) == 1
    assert "train-classifier" in capsys.readouterr().err


def test_label_motion_matches_each_label_to_its_own_typical_displacement():
    from lfdm.evaluation.label_motion import LabelMotion, displacement, score_motion

    rng = np.random.default_rng(0)
    still = np.zeros((4, 8, 8, 2))
    patterns = {label: rng.normal(size=(4, 8, 8, 2)) * np.arange(4)[:, None, None, None] for label in "abc"}
    reference = LabelMotion.from_videos(
        {label: [still + pattern * scale for scale in (0.5, 1.5)] for label, pattern in patterns.items()}
    )
    assert np.abs(displacement(still + patterns["a"])[..., 0, :, :, :]).max() == 0, "frame 0 does not move"
    generated = {label: still + 2 * patterns[label] for label in "abc"}
    score = score_motion(reference, generated)
    assert score.num_matches == 3 and np.allclose(list(score.energy.values()), 2.0), score.energy
    swapped = score_motion(reference, {"a": generated["b"], "b": generated["a"], "c": generated["c"]})
    assert swapped.matches == {"a": False, "b": False, "c": True}
    several = score_motion(reference, {label: np.stack([flows, flows]) for label, flows in generated.items()})
    assert several.num_matches == 3 and np.isclose(several.mean_energy, 2.0)
