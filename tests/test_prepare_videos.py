"""prepare-videos: raw clips resampled to one frame rate, cut to the model's frame count, framed like its pictures;
clips without faces, corrupt files and too-short clips are skipped with a reason, and the good ones are kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lfdm.data.factory import dataset_framing
from lfdm.data.prepare import (
    ClipFormat,
    UnusableClip,
    clip_format_of,
    prepare_clip,
    prepare_folder,
    resampled_indices,
)
from lfdm.data.transforms import resize_and_pad
from lfdm.data.videos import VideoFolderDataset
from lfdm.driving import frame_driving_faces, load_driving_video
from lfdm.framing import SYNTHFACE_FRAMING, WHOLE_PICTURE
from lfdm.testing import film_with_moving_camera, make_test_image
from lfdm.video import read_video, write_video

ASTRONAUT = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.png"
NUM_FRAMES = 6


def face_clip(num_frames: int, size: int = 160) -> np.ndarray:
    """uint8 (F, size, size, 3): the astronaut filmed by a camera that pans and zooms."""
    photo = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    clip, _ = film_with_moving_camera(np.repeat(photo[None], num_frames, axis=0), size)
    return clip


def pipeline_configs(folder: Path, framing: dict | None, *, image_size: int = 32, num_frames: int = NUM_FRAMES):
    """The two config files `clip_format_of` reads, as a pipeline folder holds them."""
    (folder / "lfae").mkdir(parents=True)
    (folder / "unet").mkdir(parents=True)
    (folder / "lfae" / "config.json").write_text(json.dumps({"image_size": image_size, "framing": framing}))
    (folder / "unet" / "config.json").write_text(json.dumps({"num_frames": num_frames}))
    return folder


def test_the_clip_format_comes_from_the_models_configs(tmp_path):
    assert clip_format_of("checkpoints") == ClipFormat(size=64, num_frames=16, framing=SYNTHFACE_FRAMING, fps=10.0)
    whole = clip_format_of(pipeline_configs(tmp_path / "whole", {"kind": "whole"}), fps=25)
    assert whole == ClipFormat(size=32, num_frames=NUM_FRAMES, framing=WHOLE_PICTURE, fps=25.0)
    with pytest.raises(FileNotFoundError, match="not a pipeline folder.*--model checkpoints"):
        clip_format_of(tmp_path)


def test_every_clip_is_resampled_to_one_frame_rate():
    clip_format = ClipFormat(size=32, num_frames=4, framing=WHOLE_PICTURE, fps=10.0)
    assert resampled_indices(30.0, clip_format).tolist() == [0, 3, 6, 9], "a faster clip drops frames"
    assert resampled_indices(5.0, clip_format).tolist() == [0, 1, 1, 2], "a slower one repeats the nearest"
    assert resampled_indices(0.0, clip_format).tolist() == [0, 1, 2, 3], "no rate: taken as the target's"


def test_a_whole_picture_model_gets_the_first_frames_resized_and_padded():
    clip_format = ClipFormat(size=32, num_frames=4, framing=WHOLE_PICTURE, fps=10.0)
    frames = np.stack([make_test_image(48, seed) for seed in range(12)])[:, :, 8:]  # (12, 48, 40, 3): not square
    prepared = prepare_clip(frames, 20.0, clip_format)
    np.testing.assert_array_equal(prepared, resize_and_pad(frames[[0, 2, 4, 6]], 32))
    read = []
    prepare_clip((read.append(index) or frame for index, frame in enumerate(frames)), 20.0, clip_format)
    assert read == list(range(7)), "an iterator is read only as far as the last frame needed"
    with pytest.raises(UnusableClip, match="too short: 12 frames at 60 fps") as error:
        prepare_clip(frames, 60.0, clip_format)
    assert error.value.reason == "too short"


def test_a_face_model_frames_the_face_as_driving_videos_are():
    clip_format = ClipFormat(size=64, num_frames=NUM_FRAMES, framing=SYNTHFACE_FRAMING, fps=10.0)
    frames = face_clip(NUM_FRAMES)
    prepared = prepare_clip(frames, 10.0, clip_format)
    driving = frame_driving_faces(load_driving_video(frames, 64), 64, SYNTHFACE_FRAMING)
    expected = (driving.frames.permute(0, 2, 3, 1) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    assert driving.aligned, "the astronaut fills the frame: its face must be cut out and aligned"
    np.testing.assert_array_equal(prepared, expected)
    np.testing.assert_array_equal(prepare_clip(frames, 10.0, clip_format), prepared, "the same frames, the same clip")
    with pytest.raises(UnusableClip, match="no face: none of its 6 frames") as error:
        prepare_clip(np.repeat(make_test_image(160)[None], NUM_FRAMES, axis=0), 10.0, clip_format)
    assert error.value.reason == "no face"


@pytest.fixture(scope="module")
def raw_folder(tmp_path_factory) -> Path:
    """raw/wink: one face clip at 10 fps, the same clip at 30 fps (each frame three times); raw/yawn: a clip with
    no face, a corrupt mp4, a clip too short and one good clip (the label's only one)."""
    raw = tmp_path_factory.mktemp("raw")
    clip = face_clip(NUM_FRAMES)
    write_video(raw / "wink" / "ten.mp4", clip, fps=10)
    write_video(raw / "wink" / "thirty.mp4", np.repeat(clip, 3, axis=0), fps=30)
    write_video(raw / "yawn" / "good.mp4", clip[::-1], fps=10)
    write_video(raw / "yawn" / "noface.mp4", np.repeat(make_test_image(160)[None], NUM_FRAMES, axis=0), fps=10)
    write_video(raw / "yawn" / "short.mp4", clip[:3], fps=10)
    (raw / "yawn" / "corrupt.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8).tobytes())
    return raw


def test_the_command_keeps_the_good_clips_and_says_why_it_skips_the_others(raw_folder, tmp_path, capsys):
    from lfdm.cli import main

    model = pipeline_configs(tmp_path / "model", SYNTHFACE_FRAMING.to_config(), image_size=64)
    out = tmp_path / "clips"
    assert main(["prepare-videos", str(raw_folder), "--model", str(model), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "corrupt.mp4: unreadable" in printed and "Export it again" in printed
    assert "noface.mp4: no face" in printed and "short.mp4: too short: 3 frames at 10 fps" in printed
    assert "label 'yawn' has 1 usable clip;" in printed and "label 'wink'" not in printed
    assert "3 clips kept, 3 skipped (1 no face, 1 too short, 1 unreadable)" in printed
    assert sorted(path.relative_to(out).as_posix() for path in out.glob("*/*")) == [
        "wink/ten",
        "wink/thirty",
        "yawn/good",
    ]
    ten, thirty = read_video(out / "wink" / "ten"), read_video(out / "wink" / "thirty")
    assert ten.shape == thirty.shape == (NUM_FRAMES, 64, 64, 3)
    # at 10 fps the 30 fps clip is its every third frame (the two mp4 files differ by their compression only)
    every_third = read_video(raw_folder / "wink" / "thirty.mp4")[::3]
    np.testing.assert_array_equal(thirty, prepare_clip(every_third, 10.0, clip_format_of(model)))
    assert dataset_framing("folder", out) == SYNTHFACE_FRAMING, "a model trained on the folder records its framing"


def test_training_reads_exactly_the_prepared_frames(raw_folder, tmp_path):
    clip_format = ClipFormat(size=32, num_frames=NUM_FRAMES, framing=WHOLE_PICTURE, fps=10.0)
    report = prepare_folder(raw_folder, tmp_path / "clips", clip_format)
    assert [reason for _, reason, _ in report.skipped] == ["unreadable", "too short"], "a whole picture needs no face"
    clips = VideoFolderDataset(tmp_path / "clips", resolution=32, num_frames=NUM_FRAMES, frame_sampling="uniform")
    assert clips.labels == ("wink", "yawn") and len(clips) == 4
    item = clips[[entry.path.name for entry in clips.entries].index("ten")]
    expected = prepare_clip(read_video(raw_folder / "wink" / "ten.mp4"), 10.0, clip_format)
    np.testing.assert_array_equal(np.round(item["video"].permute(1, 2, 3, 0).numpy() * 255).astype(np.uint8), expected)


def test_bad_folders_say_what_to_do(raw_folder, tmp_path):
    clip_format = ClipFormat(size=32, num_frames=NUM_FRAMES, framing=WHOLE_PICTURE)
    with pytest.raises(FileNotFoundError, match="RAW/<label>/<video>"):
        prepare_folder(tmp_path / "missing", tmp_path / "out", clip_format)
    with pytest.raises(ValueError, match="must be outside"):
        prepare_folder(raw_folder, raw_folder / "prepared", clip_format)
