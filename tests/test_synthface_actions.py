"""SynthFace's extra actions (the wink) and the guarantee that the seven shipped labels render as before.

`tests/fixtures/synthface_frames.npz` holds frames of the seven labels rendered before the extra actions existed;
the shipped model and many tests were made from exactly these pixels. `python tests/test_synthface_actions.py`
rewrites it, which is only right after a deliberate change of SynthFace's look.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from lfdm.commands import make_dataset
from lfdm.data.synthface import SYNTHFACE_LABELS, SynthFaceDataset, render_frames, render_video, split_identities
from lfdm.data.synthface.expressions import (
    ACTIONS,
    ALL_SYNTHFACE_LABELS,
    SYNTHFACE_EXTRA_LABELS,
    animate,
    label_index,
    sample_video_params,
)
from lfdm.data.synthface.identity import pose_matrix, sample_identity, static_layer
from lfdm.data.synthface.render import Painter, draw_head
from lfdm.data.videos import VideoFolderDataset

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "synthface_frames.npz"
# (identity seed, take): a training and a test identity
PINNED_VIDEOS = ((3, 1), (8388611, 0))
PINNED_FRAMES = (0, 4, 8, 11)  # of 12


def seven_label_frames() -> dict[str, np.ndarray]:
    """uint8 frames of every shipped label: flat renders (4, 64, 64, 3) per video, and photographic-look clips."""
    arrays = {}
    for seed, take in PINNED_VIDEOS:
        for label in SYNTHFACE_LABELS:
            arrays[f"flat_{seed}_{label}"] = render_frames(seed, label, take, PINNED_FRAMES, num_frames=12)
    looks = SynthFaceDataset("test", num_identities=1, num_frames=6, appearance=1.0)
    for index in range(len(looks)):
        item = looks[index]
        arrays[f"look_{item['label']}"] = (item["video"][:, ::5].numpy() * 255).round().astype(np.uint8)
    return arrays


def test_seven_labels_render_exactly_as_before_the_extra_actions():
    pinned = np.load(FIXTURE)
    now = seven_label_frames()
    assert sorted(now) == sorted(pinned.files), "the pinned set of videos changed; rewrite the fixture on purpose"
    for name, frames in now.items():
        changed = np.count_nonzero(frames != pinned[name])
        assert changed == 0, f"{name}: {changed} values differ from the frames every shipped model was trained on"


def test_extra_labels_stay_out_of_the_default_set():
    assert "wink" in SYNTHFACE_EXTRA_LABELS and "wink" not in SYNTHFACE_LABELS
    assert SynthFaceDataset("test", num_identities=1).labels == SYNTHFACE_LABELS
    assert [label_index(label) for label in ALL_SYNTHFACE_LABELS] == list(range(len(ALL_SYNTHFACE_LABELS)))
    with pytest.raises(ValueError, match="wink"):
        label_index("nod")


def test_wink_closes_one_eye_and_reopens_it():
    params = sample_video_params(8388612, "wink", 0)
    times = np.linspace(0, 1, 200)
    states = animate(params, times)
    assert states.wink[0] == 0 and states.wink[-1] < 1e-6, "the winking eye must start and end open"
    shut = times[states.wink > 0.99]
    assert shut.size and shut.max() - shut.min() >= 0.1, "the eye should stay shut for a tenth of the clip"
    assert not np.any(states.actions), "a wink moves no other facial action"
    assert states.wink_side == params.side
    neutral = animate(sample_video_params(8388612, "neutral", 0), times)
    np.testing.assert_array_equal(states.blink, neutral.blink, err_msg="blinks belong to the take, not the label")


def test_a_wink_video_starts_from_the_same_neutral_frame_as_the_seven():
    """Evaluation gives every label of a take one input picture, frame 0: the wink's must be the same face."""
    wink, neutral = (render_frames(8388615, label, 2, [0, 1], num_frames=32) for label in ("wink", "neutral"))
    np.testing.assert_array_equal(wink[0], neutral[0], err_msg="frame 0 of the wink is not the take's neutral face")


def test_dataset_renders_a_chosen_label_list_with_indices_into_it():
    eight = SynthFaceDataset("test", num_identities=1, num_frames=4, labels=SYNTHFACE_LABELS + ("wink",))
    items = [eight[index] for index in range(len(eight))]
    assert [(item["label"], item["label_index"]) for item in items] == [
        (label, index) for index, label in enumerate(eight.labels)
    ]
    only = SynthFaceDataset("test", num_identities=2, num_frames=4, labels=["wink"])
    assert {only[index]["label_index"] for index in range(len(only))} == {0}
    with pytest.raises(ValueError, match="once"):
        SynthFaceDataset("test", labels=["wink", "wink"])


def _make_dataset(*options: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    make_dataset.add_arguments(parser)
    return parser.parse_args([*options, "--frames", "8", "--workers", "1"])


def test_make_dataset_writes_clips_of_a_new_action_as_a_labelled_folder(tmp_path):
    out = tmp_path / "clips"
    assert make_dataset.run(_make_dataset("--layout", "labels", "--labels", "wink", "happiness", "--videos", "2",
                                          "--out", str(out))) == 0  # fmt: skip
    faces = split_identities("train", 2, seed=make_dataset.UNSEEN_SEED)
    assert not set(faces) & set(split_identities("train", 10_000) + split_identities("test", 100)), "unseen faces"
    names = [f"{seed:05d}_000.mp4" for seed in faces]
    written = sorted(path.relative_to(out).as_posix() for path in out.rglob("*.mp4"))
    assert written == sorted(f"{label}/{name}" for label in ("happiness", "wink") for name in names)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["labels"] == [*SYNTHFACE_LABELS, "wink"], "the seven keep their indices, extras follow"
    assert metadata["splits"] == {"train": [f"{seed:05d}" for seed in faces]}, "training faces only"

    clips = VideoFolderDataset(out, resolution=64, num_frames=8)
    assert clips.labels == ("happiness", "wink"), "the folder data set takes the labels from the sub-folders"
    wink = next(clips[index] for index in range(len(clips)) if clips[index]["label"] == "wink")
    read = (wink["video"].permute(1, 2, 3, 0).numpy() * 255).round()
    face = int(Path(wink["identity"]).stem.split("_")[0])  # the identity is the clip's path: wink/<face>_000.mp4
    rendered = render_video(face, "wink", 0, num_frames=8).astype(float)
    assert np.abs(read - rendered).mean() < 4, "the mp4 keeps the rendered clip"


def test_make_dataset_refuses_videos_for_the_split_layout(tmp_path):
    with pytest.raises(ValueError, match="--videos"):
        make_dataset.run(_make_dataset("--videos", "3", "--out", str(tmp_path)))


def _eye_box(identity, size: int, side: int) -> tuple[slice, slice]:
    """Pixels (rows, columns) around one eye and its brow at rest, on a `size` canvas."""
    matrix = pose_matrix(identity, (0.0, 0.0, 0.0, 1.0), size)
    centre = matrix[:, :2] @ (side * identity.eye_spacing, identity.eye_y - 0.02) + matrix[:, 2]
    half = 0.085 * math.hypot(matrix[0, 0], matrix[1, 0])  # face units -> pixels
    return slice(int(centre[1] - half), int(centre[1] + half)), slice(int(centre[0] - half), int(centre[0] + half))


@pytest.mark.parametrize("wink_side", [-1, 1])
def test_wink_changes_only_the_winking_eye(wink_side):
    identity, size = sample_identity(8388613), 256
    rest = pose_matrix(identity, (0.0, 0.0, 0.0, 1.0), size)

    def draw(wink: float) -> np.ndarray:
        canvas = static_layer(identity, size).copy()
        painter = Painter(canvas, rest)
        draw_head(painter, identity, np.zeros(len(ACTIONS)), 0.0, (0.0, 0.0), 1, wink, wink_side)
        painter.flush()
        return canvas.astype(np.int16)

    changed = np.abs(draw(1.0) - draw(0.0)).max(axis=-1) > 8
    rows, columns = _eye_box(identity, size, wink_side)
    inside = changed[rows, columns].sum()
    assert inside > 200, f"a shut eye should change the winking eye's box clearly; {inside} pixels changed"
    assert changed.sum() == inside, f"{changed.sum() - inside} pixels changed outside the winking eye and brow"
    other_rows, other_columns = _eye_box(identity, size, -wink_side)
    assert not changed[other_rows, other_columns].any(), "the other eye must stay open"


def _brightest(frame: np.ndarray, box: tuple[slice, slice]) -> int:
    """The brightest pixel's darkest channel in `box` of a uint8 (H, W, 3) frame: high where white of the eye shows."""
    return int(frame[box].min(-1).max())


@pytest.mark.parametrize("seed", [4, 8388612, 8388614])
def test_wink_reads_at_64_px(seed):
    """At 64 px the white of the winking eye disappears at the shut frame; the other eye's stays."""
    take, scale = 0, 256 // 64
    params = sample_video_params(seed, "wink", take)
    shut = int(np.argmax(animate(params, np.arange(32) / 31).wink))
    frames = render_frames(seed, "wink", take, [0, shut], num_frames=32)
    identity = sample_identity(seed)
    drops = {}
    for side in (-1, 1):
        rows, columns = _eye_box(identity, 256, side)
        box = (slice(rows.start // scale, rows.stop // scale), slice(columns.start // scale, columns.stop // scale))
        drops[side] = _brightest(frames[0], box) - _brightest(frames[1], box)
    winking, other = drops[params.side], drops[-params.side]
    assert winking > 30 and winking > 2 * other, f"brightness drop: winking eye {winking}, other eye {other}"


if __name__ == "__main__":
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(FIXTURE, **seven_label_frames())
    print(f"wrote {FIXTURE}")
