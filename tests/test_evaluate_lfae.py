"""evaluate-lfae: reconstruct every frame from frame 0 and compare with copying frame 0."""

from __future__ import annotations

import json

import pytest
import torch

from lfdm.cli import main
from lfdm.evaluation.lfae import evaluate_reconstruction
from lfdm.metrics import psnr
from lfdm.models import LatentFlowAutoencoder
from lfdm.testing import tiny_lfae_config

TINY_LFAE = tiny_lfae_config(width=8, num_regions=4)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return LatentFlowAutoencoder(**TINY_LFAE)


def test_scores_cover_every_frame_after_the_first(tiny_model):
    videos = [torch.rand(3, 5, 32, 32), torch.rand(3, 3, 32, 32)]
    evaluation = evaluate_reconstruction(tiny_model, videos, batch_size=3)
    assert evaluation.num_videos == 2 and evaluation.num_frames == 4 + 2
    assert evaluation.autoencoder.l1 > 0 and 0 < evaluation.autoencoder.psnr < 100


def test_kept_reconstructions_are_the_scored_frames_after_the_input_frame_0(tiny_model):
    videos = [torch.rand(3, 5, 32, 32, generator=torch.Generator().manual_seed(2)), torch.rand(3, 3, 32, 32)]
    kept = []
    evaluation = evaluate_reconstruction(tiny_model, videos, batch_size=2, reconstructions=kept)
    assert [tuple(video.shape) for video in kept] == [(3, 5, 32, 32), (3, 3, 32, 32)]
    assert all(torch.equal(video[:, 0], original[:, 0]) for video, original in zip(kept, videos, strict=True))
    frames = torch.cat([video[:, 1:].transpose(0, 1) for video in kept])
    targets = torch.cat([original[:, 1:].transpose(0, 1) for original in videos])
    assert psnr(frames, targets).mean().item() == pytest.approx(evaluation.autoencoder.psnr, abs=1e-4)


def test_copy_baseline_is_perfect_on_a_still_video(tiny_model):
    still = torch.rand(3, 1, 32, 32).expand(3, 4, 32, 32)
    evaluation = evaluate_reconstruction(tiny_model, [still])
    assert evaluation.copy_frame_0.l1 == 0 and evaluation.copy_frame_0.psnr == pytest.approx(100)
    assert evaluation.copy_frame_0.ssim == pytest.approx(1, abs=1e-5)
    assert "copy frame 0" in evaluation.table()


def test_labelled_videos_are_scored_per_label_too(tiny_model):
    videos = [torch.rand(3, 4, 32, 32, generator=torch.Generator().manual_seed(seed)) for seed in range(3)]
    still = torch.rand(3, 1, 32, 32).expand(3, 3, 32, 32)
    items = [(videos[0], "smile"), (still, "still"), (videos[1], "smile"), (videos[2], "frown")]
    evaluation = evaluate_reconstruction(tiny_model, items)
    assert list(evaluation.per_label) == ["smile", "still", "frown"], "in the order the labels came"
    assert [scores.num_frames for scores in evaluation.per_label.values()] == [6, 2, 3]
    assert evaluation.per_label["still"].copy_frame_0.psnr == pytest.approx(100)
    smile_only = evaluate_reconstruction(tiny_model, [videos[0], videos[1]])
    assert evaluation.per_label["smile"].autoencoder.psnr == pytest.approx(smile_only.autoencoder.psnr, abs=1e-5)
    assert not smile_only.per_label, "unlabelled videos have no per-label scores"
    record = evaluation.to_dict()["per_label"]["frown"]
    assert record["psnr_gain_db"] == pytest.approx(record["autoencoder"]["psnr"] - record["copy_frame_0"]["psnr"])
    assert "frown" in evaluation.table()


def test_batch_size_does_not_change_the_scores(tiny_model):
    videos = [torch.rand(3, 6, 32, 32, generator=torch.Generator().manual_seed(1))]
    one = evaluate_reconstruction(tiny_model, videos, batch_size=1)
    all_at_once = evaluate_reconstruction(tiny_model, videos, batch_size=8)
    assert one.autoencoder.psnr == pytest.approx(all_at_once.autoencoder.psnr, abs=1e-3)


def test_command_writes_json_with_both_rows(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "model")
    out = tmp_path / "scores.json"
    args = ["evaluate-lfae", "--model", str(tmp_path / "model"), "--num-identities", "1", "--num-frames", "3"]
    assert main([*args, "--max-videos", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "autoencoder" in printed and "copy frame 0" in printed
    record = json.loads(out.read_text())
    assert record["num_videos"] == 2 and record["num_frames"] == 4
    for row in ("autoencoder", "copy_frame_0"):
        assert set(record[row]) == {"l1", "psnr", "ssim"}
    assert record["psnr_gain_db"] == pytest.approx(record["autoencoder"]["psnr"] - record["copy_frame_0"]["psnr"])
    assert sum(scores["num_frames"] for scores in record["per_label"].values()) == 4
    assert all(label in printed for label in record["per_label"])


def test_photographic_test_videos_on_request(tiny_model, tmp_path):
    from lfdm.data.factory import DataConfig
    from lfdm.evaluation.lfae import evaluation_videos

    data = DataConfig(resolution=32, num_frames=3, num_identities=1)
    flat = [video for video in evaluation_videos(data, max_videos=2)]
    photo = [video for video in evaluation_videos(data, max_videos=2, appearance=1.0)]
    assert all((a - b).abs().mean() > 0.01 for a, b in zip(flat, photo, strict=True))
    with pytest.raises(ValueError, match="photographed"):
        next(evaluation_videos(DataConfig(dataset="mug", root=str(tmp_path)), appearance=0.5))
    tiny_model.save_pretrained(tmp_path / "model")
    args = ["evaluate-lfae", "--model", str(tmp_path / "model"), "--num-identities", "1", "--num-frames", "3"]
    assert main([*args, "--max-videos", "1", "--appearance", "1", "--out", str(tmp_path / "s.json")]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["appearance"] == 1.0


def test_command_rejects_a_folder_without_a_model(tmp_path, capsys):
    assert main(["evaluate-lfae", "--model", str(tmp_path)]) == 1
    assert "save_pretrained" in capsys.readouterr().err


def test_data_is_named_as_in_every_command_and_the_older_spelling_still_works():
    from argparse import Namespace

    from lfdm.commands._data import data_source

    def source(data, data_root=None, preset=None):
        return data_source(Namespace(data=data, data_root=data_root, preset=preset))

    assert source("mug", "/data/MUG") == ("mug", "/data/MUG")
    assert source("/data/MUG", preset="mug") == ("mug", "/data/MUG"), "--data DIR --preset NAME"
    assert source("/data/videos") == ("folder", "/data/videos"), "the older default preset was a plain folder"
    with pytest.raises(ValueError, match="--data mug --data-root"):
        source("synthface", preset="mug")


def test_the_command_parses_the_shared_data_options_and_the_older_spelling():
    import argparse

    from lfdm.commands import evaluate_lfae

    parser = argparse.ArgumentParser()
    evaluate_lfae.add_arguments(parser)
    shared = parser.parse_args(["--model", "m", "--data", "mhad", "--data-root", "/data/MHAD", "--label-from", "a.csv"])
    assert (shared.data, shared.data_root, shared.label_from, shared.preset) == ("mhad", "/data/MHAD", "a.csv", None)
    older = parser.parse_args(["--model", "m", "--data", "/data/MUG", "--preset", "mug"])
    assert (older.data, older.preset) == ("/data/MUG", "mug")
