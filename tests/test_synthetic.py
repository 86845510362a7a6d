"""SynthFace: determinism, splits, shapes, value ranges, expression timing, the data set and make-dataset."""

from __future__ import annotations

import argparse
import json

import numpy as np
import PIL.Image
import pytest
import torch

from lfdm.commands import make_dataset
from lfdm.data.synthetic import (
    SYNTHFACE_LABELS,
    SynthFaceDataset,
    render_frames,
    render_video,
    sample_identity,
    sample_video_params,
    split_identities,
)
from lfdm.data.synthface.sheet import contact_sheet

RESOLUTION = 32
FRAMES = 8


def _mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean())


def test_labels_are_the_mug_set():
    assert SYNTHFACE_LABELS == ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")


@pytest.mark.parametrize("resolution", [32, 48, 64])
def test_video_shape_dtype_and_range(resolution):
    video = render_video(3, "surprise", 0, resolution=resolution, num_frames=4)
    assert video.shape == (4, resolution, resolution, 3)
    assert video.dtype == np.uint8
    assert video.min() < 80 and video.max() > 200, "frames should use most of the value range (dark eyes, teeth)"


def test_same_seed_same_video():
    first = render_video(5, "happiness", 2, resolution=RESOLUTION, num_frames=FRAMES)
    second = render_video(5, "happiness", 2, resolution=RESOLUTION, num_frames=FRAMES)
    np.testing.assert_array_equal(first, second)


def test_identities_and_takes_differ():
    video = render_video(5, "happiness", 0, resolution=RESOLUTION, num_frames=FRAMES)
    other_identity = render_video(6, "happiness", 0, resolution=RESOLUTION, num_frames=FRAMES)
    other_take = render_video(5, "happiness", 1, resolution=RESOLUTION, num_frames=FRAMES)
    assert _mean_difference(video[0], other_identity[0]) > 10, "two identities should look clearly different"
    assert not np.array_equal(video, other_take), "two takes of one identity and label should differ"


def test_render_frames_matches_the_full_video():
    video = render_video(9, "fear", 1, resolution=RESOLUTION, num_frames=FRAMES)
    frames = render_frames(9, "fear", 1, [6, 0, 3], resolution=RESOLUTION, num_frames=FRAMES)
    np.testing.assert_array_equal(frames, video[[6, 0, 3]])


def test_every_label_starts_from_the_same_neutral_frame():
    first_frames = [
        render_frames(11, label, 0, [0], resolution=RESOLUTION, num_frames=FRAMES)[0] for label in SYNTHFACE_LABELS
    ]
    for label, frame in zip(SYNTHFACE_LABELS, first_frames, strict=True):
        np.testing.assert_array_equal(frame, first_frames[0], err_msg=f"frame 0 of {label!r} is not the neutral face")


@pytest.mark.parametrize("take", [0, 1, 2])
def test_two_labels_differ_only_after_onset(take):
    num_frames = 16
    happiness = render_video(4, "happiness", take, resolution=RESOLUTION, num_frames=num_frames)
    sadness = render_video(4, "sadness", take, resolution=RESOLUTION, num_frames=num_frames)
    onset = sample_video_params(4, "happiness", take).onset
    assert onset == sample_video_params(4, "sadness", take).onset, "the onset belongs to the take, not the label"
    times = np.arange(num_frames) / (num_frames - 1)
    before = times < onset
    assert before.sum() >= 1
    np.testing.assert_array_equal(happiness[before], sadness[before])
    assert _mean_difference(happiness[-1], sadness[-1]) > 1.0, "the expressions should differ at the end"


@pytest.mark.parametrize("label", [label for label in SYNTHFACE_LABELS if label != "neutral"])
def test_expressions_deform_the_face(label):
    video = render_video(2, label, 0, resolution=64, num_frames=FRAMES)
    neutral = render_video(2, "neutral", 0, resolution=64, num_frames=FRAMES)
    assert _mean_difference(video[-1], neutral[-1]) > 1.0, f"{label!r} looks like neutral at its end"


def test_neutral_is_not_a_still_image():
    video = render_video(1, "neutral", 0, resolution=RESOLUTION, num_frames=32)
    changes = [_mean_difference(video[0], frame) for frame in video[1:]]
    assert max(changes) > 0.2, "blinks and micro head motion should move a neutral face"


def test_intensity_and_timing_are_in_range():
    for take in range(20):
        params = sample_video_params(7, "anger", take)
        assert 0.6 <= params.intensity <= 1.0
        assert 0.0 < params.onset < 0.5
    assert sample_video_params(7, "neutral", 0).intensity == 0.0


def test_unknown_label_raises_with_the_valid_labels():
    with pytest.raises(ValueError, match="happiness"):
        render_video(0, "joy", 0)


def test_identity_parameters_vary():
    identities = [sample_identity(seed) for seed in range(60)]
    assert len({identity.hair_style for identity in identities}) >= 4
    assert len({identity.background_kind for identity in identities}) == 3
    assert any(identity.glasses for identity in identities) and any(identity.beard for identity in identities)


def test_splits_are_deterministic_and_disjoint():
    train = split_identities("train", 500, seed=3)
    test = split_identities("test", 500, seed=3)
    assert train == split_identities("train", 500, seed=3)
    assert len(set(train)) == 500 and len(set(test)) == 500
    assert not set(train) & set(test)
    assert not set(split_identities("train", 50, seed=0)) & set(train), "another seed gives other identities"
    with pytest.raises(ValueError, match="split"):
        split_identities("validation", 5)


def test_clip_items_have_the_documented_layout():
    dataset = SynthFaceDataset("train", resolution=RESOLUTION, num_frames=4, num_identities=3)
    assert len(dataset) == 3 * len(SYNTHFACE_LABELS)
    item = dataset[len(SYNTHFACE_LABELS) + 3]
    assert item["video"].shape == (3, 4, RESOLUTION, RESOLUTION) and item["video"].dtype == torch.float32
    assert 0.0 <= item["video"].min() and item["video"].max() <= 1.0
    assert item["label"] == SYNTHFACE_LABELS[3] and item["label_index"] == 3
    assert item["identity"] == f"{split_identities('train', 3)[1]:05d}"


def test_pair_items_are_two_frames_of_one_video_in_order():
    dataset = SynthFaceDataset(
        "test", resolution=RESOLUTION, num_frames=FRAMES, num_identities=2, view="pair", length=50
    )
    for index in range(6):
        item = dataset[index]
        reference, driving = dataset.pair_indices(index)
        assert reference <= driving
        identity, label, take = dataset.video_key(index)
        frames = render_frames(identity, label, take, [reference, driving], resolution=RESOLUTION, num_frames=FRAMES)
        assert item["reference"].shape == (3, RESOLUTION, RESOLUTION)
        expected = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
        torch.testing.assert_close(item["reference"], expected[0])
        torch.testing.assert_close(item["driving"], expected[1])


def test_virtual_dataset_is_reproducible_and_fresh_each_epoch():
    dataset = SynthFaceDataset("train", resolution=RESOLUTION, num_frames=4, length=1000, view="pair")
    again = SynthFaceDataset("train", resolution=RESOLUTION, num_frames=4, length=1000, view="pair")
    assert len(dataset) == 1000
    keys = [dataset.video_key(index) for index in range(20)]
    assert keys == [again.video_key(index) for index in range(20)]
    torch.testing.assert_close(dataset[7]["driving"], again[7]["driving"])
    dataset.set_epoch(1)
    assert keys != [dataset.video_key(index) for index in range(20)]
    assert len({label for _, label, _ in keys}) > 2


def test_train_and_test_items_never_share_identities():
    train = SynthFaceDataset("train", resolution=RESOLUTION, num_frames=2, length=200, view="pair")
    test = SynthFaceDataset("test", resolution=RESOLUTION, num_frames=2, length=200, view="pair")
    train_ids = {train.video_key(index)[0] for index in range(200)}
    test_ids = {test.video_key(index)[0] for index in range(200)}
    assert not train_ids & test_ids


def test_dataloader_batches_items():
    dataset = SynthFaceDataset("train", resolution=RESOLUTION, num_frames=4, length=8, view="clip")
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch["video"].shape == (4, 3, 4, RESOLUTION, RESOLUTION)
    assert batch["label_index"].shape == (4,) and len(batch["identity"]) == 4


def test_dataset_rejects_bad_arguments():
    with pytest.raises(ValueError, match="view"):
        SynthFaceDataset(view="triplet")
    with pytest.raises(ValueError, match="num_frames"):
        SynthFaceDataset(view="pair", num_frames=1)


def test_contact_sheet_has_one_row_per_label():
    sheet = contact_sheet(0, resolution=RESOLUTION, num_frames=FRAMES, columns=4)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3
    assert sheet.shape[0] > len(SYNTHFACE_LABELS) * RESOLUTION
    assert sheet.shape[1] > 4 * RESOLUTION


def test_make_dataset_writes_a_mug_layout(tmp_path):
    parser = argparse.ArgumentParser()
    make_dataset.add_arguments(parser)
    out = tmp_path / "synthface"
    args = parser.parse_args(
        [
            "--out",
            str(out),
            "--resolution",
            "32",
            "--frames",
            "4",
            "--train-identities",
            "1",
            "--test-identities",
            "1",
            "--labels",
            "happiness",
            "surprise",
            "--workers",
            "1",
            "--preview",
            str(tmp_path / "sheet.png"),
        ]
    )
    assert make_dataset.run(args) == 0
    videos = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.mp4"))
    train_name, test_name = f"{split_identities('train', 1)[0]:05d}", f"{split_identities('test', 1)[0]:05d}"
    assert videos == [
        f"test/{test_name}/happiness/000.mp4",
        f"test/{test_name}/surprise/000.mp4",
        f"train/{train_name}/happiness/000.mp4",
        f"train/{train_name}/surprise/000.mp4",
    ]
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["labels"] == list(SYNTHFACE_LABELS)
    assert metadata["splits"] == {"train": [train_name], "test": [test_name]}
    assert {video["path"] for video in metadata["videos"]} == set(videos)
    assert all("onset" in video["params"] for video in metadata["videos"])
    assert PIL.Image.open(tmp_path / "sheet.png").size[1] > 2 * 32
