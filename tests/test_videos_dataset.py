import csv

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.data.sampling import sample_frame_indices
from lfdm.data.synthetic import render_video
from lfdm.data.transforms import (
    DM_COLOR_JITTER,
    ColorJitter,
    JitterParams,
    crop_frames,
    pad_to_square,
    random_flips,
    resize_and_pad,
    resize_longest,
)
from lfdm.data.videos import MHAD, MUG, NATOPS, VideoFolderDataset, find_videos
from lfdm.video import write_video

RED = np.array([255, 0, 0], np.uint8)
MAGENTA = np.array([255, 0, 255], np.uint8)  # the margin colour cropping must remove


def face(seed=0, label="happiness", num_frames=6, size=32, take=0):
    """A SynthFace video: uint8 (F, size, size, 3)."""
    return render_video(seed, label, take, resolution=size, num_frames=num_frames)


def save_frames(folder, frames, suffix="png"):
    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"img_{index:04d}.{suffix}")
    return folder


def on_canvas(frames, height, width, top, left):
    """Put (F, h, w, 3) frames on a magenta (F, height, width, 3) canvas at (top, left)."""
    canvas = np.broadcast_to(MAGENTA, (len(frames), height, width, 3)).copy()
    canvas[:, top : top + frames.shape[1], left : left + frames.shape[2]] = frames
    return canvas


def magenta_pixels(frames):
    return (frames[..., 0] > 180) & (frames[..., 1] < 80) & (frames[..., 2] > 180)


def as_uint8(tensor):
    """(3, ..., H, W) float in [0, 1] -> uint8 (..., H, W, 3)."""
    return np.round(torch.movedim(tensor, 0, -1).numpy() * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------- transforms


def test_resize_and_pad_keeps_aspect_and_centres_on_black():
    image = np.full((64, 32, 3), 200, np.uint8)
    out = resize_and_pad(image, 32)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert (out[:, 8:24] == 200).all(), "the 32x16 picture sits in the middle"
    assert (out[:, :8] == 0).all() and (out[:, 24:] == 0).all(), "black bars left and right"


def test_resize_truncates_the_short_side_like_the_official_code():
    assert resize_longest(np.zeros((480, 336, 3), np.uint8), 128).shape == (128, 89, 3)  # 89.6 -> 89
    padded = pad_to_square(np.full((128, 89, 3), 9, np.uint8), 128)
    assert (padded[:, :19] == 0).all() and (padded[:, 19:108] == 9).all() and (padded[:, 108:] == 0).all()


def test_resize_handles_clips_and_up_scaling():
    clip = face(num_frames=3, size=32)
    assert resize_and_pad(clip, 48).shape == (3, 48, 48, 3)
    small = np.zeros((4, 8, 3), np.uint8)
    assert resize_and_pad(small, 16).shape == (16, 16, 3)
    with pytest.raises(ValueError, match="uint8"):
        resize_and_pad(np.zeros((8, 8, 3), np.float32), 16)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        resize_and_pad(np.zeros((8, 8), np.uint8), 16)


def test_jitter_uses_one_draw_for_every_frame():
    frame = face(num_frames=1, size=32)[0]
    clip = np.stack([frame, frame, frame])
    out = DM_COLOR_JITTER(clip, np.random.default_rng(0))
    assert out.shape == clip.shape and out.dtype == np.uint8
    assert not np.array_equal(out[0], frame), "the colours change"
    assert np.array_equal(out[0], out[1]) and np.array_equal(out[1], out[2]), "same factors for all frames"


def test_jitter_draws_within_the_official_ranges():
    rng = np.random.default_rng(1)
    draws = [DM_COLOR_JITTER.sample(rng) for _ in range(300)]
    brightness = np.array([d.brightness for d in draws])
    assert brightness.min() >= 1 - 64 / 255 and brightness.max() <= 1 + 64 / 255
    assert max(abs(d.hue) for d in draws) <= 0.04
    assert all(0.75 <= d.contrast <= 1.25 and 0.75 <= d.saturation <= 1.25 for d in draws)
    assert {d.order for d in draws} == {("brightness", "contrast", "saturation", "hue")}, "fixed order for the DM"
    shuffled = ColorJitter(0.1, 0.1, 0.1, 0.1, random_order=True)
    assert len({shuffled.sample(rng).order for _ in range(100)}) > 5


def test_jitter_operations_do_what_they_say():
    frame = face(num_frames=1, size=32)
    np.testing.assert_array_equal(ColorJitter.apply(frame, JitterParams()), frame)
    darker = ColorJitter.apply(frame, JitterParams(brightness=0.5)).astype(int)
    assert np.abs(darker - frame // 2).max() <= 1, "brightness scales the values"
    gray = ColorJitter.apply(frame, JitterParams(saturation=0.0))
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    red = np.broadcast_to(RED, (1, 4, 4, 3)).copy()
    cyan = ColorJitter.apply(red, JitterParams(hue=0.5))
    assert np.abs(cyan[0, 0, 0].astype(int) - (0, 255, 255)).max() <= 4, f"half a turn of red is cyan: {cyan[0, 0, 0]}"


def test_time_flip_pre_empts_horizontal_flip():
    clip = face(num_frames=3, size=16)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(random_flips(clip, rng, time_flip_p=1, horizontal_flip_p=1), clip[::-1])
    np.testing.assert_array_equal(random_flips(clip, rng, time_flip_p=0, horizontal_flip_p=1), clip[:, :, ::-1])
    np.testing.assert_array_equal(random_flips(clip, rng, time_flip_p=0, horizontal_flip_p=0), clip)


def test_crop_outside_the_frame_says_what_to_do():
    frames = np.zeros((2, 240, 320, 3), np.uint8)
    assert crop_frames(frames, (10, 239), (30, 290)).shape == (2, 229, 260, 3)
    with pytest.raises(ValueError, match="crop=None"):
        crop_frames(np.zeros((2, 64, 64, 3), np.uint8), None, (156, 492))


# ------------------------------------------------------------------------------------------------ folder data set


@pytest.fixture(scope="module")
def generic_root(tmp_path_factory):
    """root/<label>/<video> with one mp4, one GIF and two folders of frames."""
    root = tmp_path_factory.mktemp("generic")
    write_video(root / "happiness" / "take0.mp4", face(1, "happiness", 8), fps=8)
    write_video(root / "anger" / "take0.gif", face(2, "anger", 5), fps=8)
    save_frames(root / "anger" / "take1", face(3, "anger", 7))
    save_frames(root / "surprise" / "nested" / "take0", face(4, "surprise", 12))
    return root


def test_a_plain_folder_is_read_whole_and_augmented_for_training_only(generic_root):
    from lfdm.data.factory import DataConfig, build_dataset

    data = DataConfig(dataset="folder", root=str(generic_root), resolution=24, num_frames=4)
    train = build_dataset(data, view="pair", split="train")
    test = build_dataset(data, view="clip", split="test")
    assert len(train.entries) == len(test.entries) == 4
    assert train.augment and not test.augment


def test_finds_files_and_frame_folders(generic_root):
    names = [path.relative_to(generic_root).as_posix() for path in find_videos(generic_root)]
    assert names == ["anger/take0.gif", "anger/take1", "happiness/take0.mp4", "surprise/nested/take0"]


def test_clip_items_have_the_documented_layout(generic_root):
    dataset = VideoFolderDataset(generic_root, resolution=24, num_frames=4, seed=0)
    assert dataset.labels == ("anger", "happiness", "surprise") and len(dataset) == 4
    for index in range(len(dataset)):
        item = dataset[index]
        assert set(item) == {"video", "label", "label_index", "identity"}
        assert item["video"].shape == (3, 4, 24, 24) and item["video"].dtype == torch.float32
        assert 0 <= item["video"].min() and item["video"].max() <= 1
        assert dataset.labels[item["label_index"]] == item["label"]
        assert item["identity"] == dataset.entries[index].path.relative_to(generic_root).as_posix()


def test_clip_is_the_sampled_frames_starting_at_frame_zero(generic_root):
    source = face(4, "surprise", 12)
    dataset = VideoFolderDataset(generic_root, resolution=32, num_frames=4, frame_sampling="uniform")
    item = dataset[3]
    assert item["label"] == "surprise"
    expected = source[sample_frame_indices(12, 4, "uniform", np.random.default_rng())]
    np.testing.assert_array_equal(as_uint8(item["video"]), expected, "PNG frames at full size come back exactly")
    for mode in ("random", "very_random"):
        clip = VideoFolderDataset(generic_root, resolution=32, num_frames=4, frame_sampling=mode)[3]["video"]
        np.testing.assert_array_equal(as_uint8(clip[:, 0]), source[0], f"{mode} clips start at frame 0")


def test_short_videos_and_all_file_kinds_give_full_clips(generic_root):
    dataset = VideoFolderDataset(generic_root, resolution=16, num_frames=10, frame_sampling="random", seed=1)
    for index in range(len(dataset)):
        assert dataset[index]["video"].shape == (3, 10, 16, 16), dataset.entries[index].path


def matching_frame(image, frames):
    """Index of the frame of `frames` (F, H, W, 3) closest to `image` (H, W, 3)."""
    errors = np.abs(frames.astype(int) - image.astype(int)).mean(axis=(1, 2, 3))
    return int(errors.argmin())


def test_pairs_put_the_reference_first(generic_root):
    source = face(4, "surprise", 12)
    torch.manual_seed(0)  # items draw from torch's generator when no seed is given
    dataset = VideoFolderDataset(generic_root, view="pair", resolution=32)
    orders = []
    for _ in range(12):
        item = dataset[3]
        assert set(item) == {"reference", "driving", "label", "label_index", "identity"}
        assert item["reference"].shape == (3, 32, 32) and item["driving"].shape == (3, 32, 32)
        reference = matching_frame(as_uint8(item["reference"]), source)
        driving = matching_frame(as_uint8(item["driving"]), source)
        assert reference <= driving, "the reference is not later than the driving frame"
        orders.append((reference, driving))
    assert len(set(orders)) > 1, "pairs are drawn at random"


def test_seed_fixes_items_and_torch_seed_reproduces_fresh_draws(generic_root):
    seeded = VideoFolderDataset(generic_root, resolution=16, num_frames=4, frame_sampling="very_random", seed=3)
    first_epoch = seeded[3]["video"]
    assert torch.equal(first_epoch, seeded[3]["video"])
    draws = set()
    for epoch in range(1, 6):
        seeded.set_epoch(epoch)
        draws.add(seeded[3]["video"].numpy().tobytes())
    assert len(draws) > 1, "set_epoch gives new frames"
    fresh = VideoFolderDataset(generic_root, resolution=16, num_frames=4, frame_sampling="very_random", augment=True)
    torch.manual_seed(0)
    first = fresh[3]["video"]
    torch.manual_seed(0)
    assert torch.equal(first, fresh[3]["video"])


def test_augmented_clips_change_colour_but_keep_black_padding(tmp_path):
    save_frames(tmp_path / "happiness" / "take0", face(5, "happiness", 4, size=32)[:, :, 8:24])  # 32x16 frames
    plain = VideoFolderDataset(tmp_path, resolution=32, num_frames=4, seed=0)[0]["video"]
    dataset = VideoFolderDataset(tmp_path, resolution=32, num_frames=4, augment=True, seed=0)
    jittered = dataset[0]["video"]
    assert not torch.equal(plain, jittered)
    assert (jittered[..., :8] == 0).all() and (jittered[..., 24:] == 0).all(), "padding stays black"


def test_label_csv_with_splits(generic_root, tmp_path):
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["path", "label", "subject", "split"], ["anger/take1", "fear", "p7", "test"]])
        writer.writerow(["happiness/take0.mp4", "happiness", "p1", "train"])
    train = VideoFolderDataset(generic_root, label_from=table, split="train", labels=["fear", "happiness"])
    assert [(e.label, e.label_index, e.subject) for e in train.entries] == [("happiness", 1, "p1")]
    test = VideoFolderDataset(generic_root, label_from=table, split="test", num_frames=3, resolution=16)
    assert test[0]["label"] == "fear" and test[0]["identity"] == "p7"
    with open(table, "a", newline="") as handle:
        csv.writer(handle).writerow(["anger/missing.mp4", "anger", "p2", "train"])
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        VideoFolderDataset(generic_root, label_from=table)


def test_batches_collate(generic_root):
    dataset = VideoFolderDataset(generic_root, resolution=16, num_frames=3, seed=0)
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=2)))
    assert batch["video"].shape == (2, 3, 3, 16, 16) and batch["label"] == ["anger", "anger"]


def test_clear_errors(generic_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="No videos"):
        VideoFolderDataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="No data set folder"):
        VideoFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="'happiness' is not one of the labels"):
        VideoFolderDataset(generic_root, labels=["anger", "surprise"])
    with pytest.raises(ValueError, match="needs a preset"):
        VideoFolderDataset(generic_root, split="train")
    with pytest.raises(ValueError, match="Unknown preset"):
        VideoFolderDataset(generic_root, preset="ucf101")
    with pytest.raises(ValueError, match="frame_sampling"):
        VideoFolderDataset(generic_root, frame_sampling="every_other")


# ------------------------------------------------------------------------------------------------------- presets


def test_preset_label_lists_match_the_official_code():
    assert MUG.labels == ("anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")
    assert len(MHAD.labels) == 27 and len(NATOPS.labels) == 24
    assert MHAD.labels[0] == "right arm swipe to the left" and MHAD.labels[23] == "sit to stand"
    assert MHAD.labels[25] == "forward lunge (left foot forward)" and MHAD.labels[-1] == "squat"
    assert NATOPS.labels[0] == "I Have Command" and NATOPS.labels[14] == "Next Marshaller"
    assert NATOPS.labels[-1] == "Cut Engine"
    assert len(MUG.train_subjects) == len(MUG.test_subjects) == 26
    for preset in (MUG, MHAD, NATOPS):
        assert not set(preset.train_subjects) & set(preset.test_subjects), f"{preset.name} splits overlap"
    assert "1" not in NATOPS.train_subjects + NATOPS.test_subjects, "NATOPS subject 1 is unused"


def test_mug_layout_with_and_without_session_folders(tmp_path):
    save_frames(tmp_path / "008" / "happiness" / "take000", face(8, "happiness", 5), suffix="jpg")
    save_frames(tmp_path / "001" / "anger" / "take001", face(1, "anger", 5), suffix="jpg")
    save_frames(tmp_path / "002" / "session0" / "fear" / "take000", face(2, "fear", 5), suffix="jpg")
    train = VideoFolderDataset(tmp_path, preset="mug", split="train", resolution=32, num_frames=4)
    assert [(e.subject, e.label) for e in train.entries] == [("008", "happiness")]
    item = train[0]
    assert item["label_index"] == 3 and item["identity"] == "008" and item["video"].shape == (3, 4, 32, 32)
    test = VideoFolderDataset(tmp_path, preset=MUG, split="test")
    assert sorted((e.subject, e.label) for e in test.entries) == [("001", "anger"), ("002", "fear")]
    assert len(VideoFolderDataset(tmp_path, preset=MUG)) == 3


def test_mhad_names_and_crop(tmp_path):
    person = face(1, "surprise", 3, size=64)
    inner = np.repeat(np.repeat(person, 8, axis=1), 6, axis=2)[:, :480, :336]
    clip = on_canvas(inner, 480, 640, 0, 156)
    write_video(tmp_path / "a3_s1_t1_color.mp4", clip, fps=8)
    write_video(tmp_path / "a24_s4_t2_color.mp4", clip, fps=8)
    write_video(tmp_path / "README.gif", clip[:1], fps=8)  # not named like an MHAD video: skipped
    train = VideoFolderDataset(tmp_path, preset="mhad", split="train", resolution=64, num_frames=3, seed=0)
    assert [(e.label, e.subject) for e in train.entries] == [("right hand wave", "1")]
    frames = as_uint8(train[0]["video"])
    assert not magenta_pixels(frames).any(), "columns 156:492 are kept, the margins cut off"
    assert (frames[:, :, :10] == 0).all() and frames[:, :, 10:54].mean() > 20, "336 wide -> 44 px, padded"
    test = VideoFolderDataset(tmp_path, preset="mhad", split="test")
    assert [(e.label, e.label_index) for e in test.entries] == [("sit to stand", 23)]


def test_natops_names_and_crop(tmp_path):
    person = face(2, "happiness", 3, size=64)
    inner = np.repeat(np.repeat(person, 4, axis=1), 5, axis=2)[:, :229, :260]
    save_frames(tmp_path / "g02s03t01", on_canvas(inner, 240, 320, 10, 30))
    save_frames(tmp_path / "g24s02t05", on_canvas(inner, 240, 320, 10, 30))
    save_frames(tmp_path / "g05s01t01", on_canvas(inner, 240, 320, 10, 30))  # subject 1: in no split
    train = VideoFolderDataset(tmp_path, preset="natops", split="train", resolution=64, num_frames=2, seed=0)
    assert [(e.label, e.subject) for e in train.entries] == [("All Clear", "3")]
    frames = as_uint8(train[0]["video"])
    assert not magenta_pixels(frames).any(), "rows 10:239 and columns 30:290 are kept"
    uncropped = VideoFolderDataset(tmp_path, preset="natops", split="train", resolution=64, num_frames=2, crop=None)
    assert magenta_pixels(as_uint8(uncropped[0]["video"])).any(), "without the crop the margins show"
    test = VideoFolderDataset(tmp_path, preset="natops", split="test")
    assert [e.label for e in test.entries] == ["Cut Engine"]
    assert len(VideoFolderDataset(tmp_path, preset="natops")) == 3


def test_preset_crop_on_small_frames_says_to_turn_it_off(tmp_path):
    save_frames(tmp_path / "g02s03t01", face(2, "happiness", 2, size=32))
    dataset = VideoFolderDataset(tmp_path, preset="natops", num_frames=2)
    with pytest.raises(ValueError, match="crop=None"):
        dataset[0]
    uncropped = VideoFolderDataset(tmp_path, preset="natops", num_frames=2, crop=None, resolution=16)
    assert uncropped[0]["video"].shape == (3, 2, 16, 16)
