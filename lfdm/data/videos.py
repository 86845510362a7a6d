"""Real video data sets: any folder of videos, and presets for the layouts of MUG, UTD-MHAD and NATOPS.

A video is a file ffmpeg can decode (`.mp4`, `.avi`, ...), a GIF, or a folder of frames (image files in natural
order). `VideoFolderDataset` serves them in the two views the two training stages need:

- `view="pair"` (stage one, the LFAE): two frames of one video, the reference not later than the driving frame.
- `view="clip"` (stage two, the DM): `num_frames` frames chosen by `frame_sampling`, always starting at frame 0.

Frames are cropped (presets), scaled so the longer side is `resolution`, jittered (optional), and padded with
black to a square, as the official data sets do (official_lfdm.md, section 3). The jitter runs before the padding
so that the black bars stay black; the official code jitters the full-size frames before resizing, which gives the
same result up to rounding because the colour operations act pixel by pixel (contrast uses the mean gray level,
which averaging preserves).
"""

from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import Dataset

from lfdm.data.sampling import FRAME_SAMPLING_MODES, sample_frame_indices, sample_frame_pair
from lfdm.data.transforms import (
    DM_COLOR_JITTER,
    LFAE_COLOR_JITTER,
    ColorJitter,
    crop_frames,
    pad_to_square,
    random_flips,
    resize_longest,
)
from lfdm.labelsets import MHAD_LABELS, MUG_LABELS, NATOPS_LABELS
from lfdm.video import IMAGE_SUFFIXES, VIDEO_SUFFIXES, list_frame_files, read_video

logger = logging.getLogger(__name__)

Crop = tuple[tuple[int, int] | None, tuple[int, int] | None]  # (rows, columns), each (start, stop) or None


def _parse_mug(relative: Path) -> tuple[str, str] | None:
    """`subject/[sessionX/]expression/take` -> (expression, subject)."""
    parts = relative.parts
    return (parts[-2], parts[0]) if len(parts) >= 3 else None


def _indexed_parser(pattern: str, what: str) -> Callable[[Path], tuple[int, str] | None]:
    regex = re.compile(pattern)

    def parse(relative: Path) -> tuple[int, str] | None:
        match = regex.match(relative.name)
        if match is None:
            return None
        return int(match.group(1)) - 1, str(int(match.group(2)))

    parse.__doc__ = f"File or folder name -> ({what} index from 0, subject)."
    return parse


@dataclass(frozen=True)
class VideoPreset:
    """How a published data set is laid out.

    Attributes:
        name: short name ("mug", "mhad", "natops").
        labels: class names in index order, exactly as the official code spells them (they are the text the
            official label embeddings were computed from).
        train_subjects, test_subjects: the official subject split (subject ids as strings, without zero padding
            for MHAD and NATOPS, as in the file names for MUG).
        parse: video path relative to the root -> (label or label index, subject), or None for files to skip.
        crop: (rows, columns) to cut from each full-size frame before resizing, or None.
    """

    name: str
    labels: tuple[str, ...]
    train_subjects: tuple[str, ...]
    test_subjects: tuple[str, ...]
    parse: Callable[[Path], tuple[str | int, str] | None]
    crop: Crop | None = None

    def subjects(self, split: str) -> tuple[str, ...] | None:
        """The subjects of a split; None for "all"."""
        if split == "all":
            return None
        if split not in ("train", "test"):
            raise ValueError(f"`split` must be 'train', 'test' or 'all'; got {split!r}.")
        return self.train_subjects if split == "train" else self.test_subjects


def _ids(text: str) -> tuple[str, ...]:
    return tuple(text.split())


MUG = VideoPreset(
    name="mug",
    labels=MUG_LABELS,
    # Subjects 002, 003 and 049 have an extra `sessionX` folder level; the parser takes the first and the
    # second-to-last parts of the path, so both layouts work.
    train_subjects=_ids(
        "008 017 021 028 030 031 034 036 037 038 039 042 043 044 045 055 060 061 062 063 071 075 076 077 083 084"
    ),
    test_subjects=_ids(
        "001 002 006 007 010 013 014 020 027 032 033 040 046 048 049 052 064 065 066 070 072 073 074 078 079 082"
    ),
    parse=_parse_mug,
)
MHAD = VideoPreset(
    name="mhad",
    labels=MHAD_LABELS,
    train_subjects=_ids("1 2 3 5"),
    test_subjects=_ids("4 6 7 8"),
    parse=_indexed_parser(r"a(\d+)_s(\d+)_t\d+", "action"),
    crop=(None, (156, 492)),  # 640x480 -> 480x336 (HxW), the person in the middle
)
NATOPS = VideoPreset(
    name="natops",
    labels=NATOPS_LABELS,
    train_subjects=_ids("3 4 8 9 12 13 15 17 19 20"),
    test_subjects=_ids("2 5 6 7 10 11 14 16 18"),  # subject 1 is in neither split, as in the official code
    parse=_indexed_parser(r"g(\d{2})s(\d{2})", "gesture"),
    crop=((10, 239), (30, 290)),  # 320x240 -> 229x260
)
PRESETS = {preset.name: preset for preset in (MUG, MHAD, NATOPS)}


@dataclass(frozen=True)
class VideoEntry:
    """One video of a data set: where it is, its class and its subject."""

    path: Path
    label: str
    label_index: int
    subject: str


def find_videos(root: str | Path) -> list[Path]:
    """Every video file and folder of frames under `root`, in sorted order.

    A folder that directly holds image files is one video (its frames); video files are recognised by suffix.
    """
    videos = []
    for folder, subfolders, files in os.walk(root):
        subfolders.sort()
        names = sorted(files)
        if any(Path(name).suffix.lower() in IMAGE_SUFFIXES for name in names):
            videos.append(Path(folder))
        videos.extend(Path(folder, name) for name in names if Path(name).suffix.lower() in VIDEO_SUFFIXES)
    return videos


def _read_csv(root: Path, csv_path: Path) -> list[dict[str, str]]:
    if not csv_path.is_file():
        raise FileNotFoundError(f"No label CSV at {csv_path}; pass label_from='folder' to use folder names.")
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or not {"path", "label"} <= set(rows[0]):
        raise ValueError(
            f"{csv_path} needs a header with at least the columns `path` and `label` (optional: `subject`, "
            "`split`) and one row per video."
        )
    for row in rows:
        row["path"] = str(root / row["path"])  # absolute paths stay absolute
    return rows


class VideoFolderDataset(Dataset):
    """Videos under a folder as training pairs or clips.

    Args:
        root: the data set folder.
        preset: "mug", "mhad", "natops" (or a `VideoPreset`): layout, labels, subject split and crop. Without a
            preset the label is the first folder below `root` (`root/<label>/.../<video>`) or comes from a CSV.
        split: "train", "test" or "all"; needs a preset or a CSV `split` column unless "all".
        labels: the class list (index order); default: the preset's, else the sorted labels found.
        label_from: "folder", or the path of a CSV with columns `path` (relative to `root`), `label`, and optional
            `subject` and `split`.
        view: "clip" (stage two) or "pair" (stage one).
        resolution: side of the square output frames in pixels.
        num_frames: frames per clip (view "clip").
        frame_sampling: "uniform", "random" or "very_random" (see `lfdm.data.sampling`).
        augment: the official augmentation of the view: clips get the DM colour jitter; pairs get a time flip
            (p 0.5, which swaps reference and driving) or else a horizontal flip (p 0.5), and the LFAE jitter.
        color_jitter: replaces the view's default jitter when `augment` is on.
        crop: "preset" (the preset's crop), None, or ((row_start, row_stop) | None, (col_start, col_stop) | None).
        seed: None draws fresh randomness from torch's generator (different in every DataLoader worker and
            reproducible under `torch.manual_seed`); an int fixes item i of epoch e by (seed, e, i), so any
            DataLoader sharding gives the same items and `set_epoch` gives new draws (as `SynthFaceDataset`).

    Items are dicts. Clip view: `{"video": float32 (3, F, H, W) in [0, 1], "label": str, "label_index": int,
    "identity": str}`; pair view: `{"reference": (3, H, W), "driving": (3, H, W), "label", "label_index",
    "identity"}`. `identity` is the subject id, or the video's path relative to `root` when no subject is known.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        preset: VideoPreset | str | None = None,
        split: str = "all",
        labels: Sequence[str] | None = None,
        label_from: str | Path = "folder",
        view: str = "clip",
        resolution: int = 128,
        num_frames: int = 40,
        frame_sampling: str = "uniform",
        augment: bool = False,
        color_jitter: ColorJitter | None = None,
        crop: Crop | str | None = "preset",
        seed: int | None = None,
    ):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"No data set folder at {self.root}.")
        if isinstance(preset, str):
            if preset.lower() not in PRESETS:
                raise ValueError(f"Unknown preset {preset!r}; choose one of {sorted(PRESETS)} or None.")
            preset = PRESETS[preset.lower()]
        if view not in ("clip", "pair"):
            raise ValueError(f"`view` must be 'clip' or 'pair'; got {view!r}.")
        if frame_sampling not in FRAME_SAMPLING_MODES:
            raise ValueError(f"`frame_sampling` must be one of {FRAME_SAMPLING_MODES}; got {frame_sampling!r}.")
        if split not in ("train", "test", "all"):
            raise ValueError(f"`split` must be 'train', 'test' or 'all'; got {split!r}.")
        self.preset, self.split, self.view = preset, split, view
        self.resolution, self.num_frames, self.frame_sampling = resolution, num_frames, frame_sampling
        self.augment, self.seed, self.epoch = augment, seed, 0
        self.color_jitter = color_jitter or (DM_COLOR_JITTER if view == "clip" else LFAE_COLOR_JITTER)
        self.crop = (preset.crop if preset else None) if crop == "preset" else crop
        candidates = self._candidates(label_from)
        if labels is None:
            labels = preset.labels if preset else sorted({label for _, label, _, _ in candidates})
        self.labels = tuple(labels)
        self.entries = self._select(candidates)
        logger.info("%s: %d videos, %d labels, split %s", self.root, len(self.entries), len(self.labels), split)

    def _candidates(self, label_from: str | Path) -> list[tuple[Path, str, str, str | None]]:
        """(path, label, subject, split or None) for every video, before filtering."""
        if str(label_from) != "folder":
            rows = _read_csv(self.root, Path(label_from))
            missing = [row["path"] for row in rows if not Path(row["path"]).exists()]
            if missing:
                raise FileNotFoundError(f"{len(missing)} videos in {label_from} do not exist, e.g. {missing[0]}.")
            return [(Path(r["path"]), r["label"], r.get("subject") or "", r.get("split") or None) for r in rows]
        videos = find_videos(self.root)
        if not videos:
            raise FileNotFoundError(
                f"No videos under {self.root}: expected video files ({', '.join(VIDEO_SUFFIXES)}) or folders of "
                f"frames ({', '.join(IMAGE_SUFFIXES)})."
            )
        found = []
        for video in videos:
            relative = video.relative_to(self.root)
            if self.preset is None:
                if len(relative.parts) < 2:
                    raise ValueError(f"{video} is not inside a label folder; lay videos out as root/<label>/<video>.")
                found.append((video, relative.parts[0], "", None))
                continue
            parsed = self.preset.parse(relative)
            if parsed is None:
                logger.debug("skipping %s: not named like a %s video", video, self.preset.name)
                continue
            label, subject = parsed
            if isinstance(label, int):
                if not 0 <= label < len(self.preset.labels):
                    raise ValueError(f"{video}: class number {label + 1} is outside 1..{len(self.preset.labels)}.")
                label = self.preset.labels[label]
            found.append((video, label, subject, None))
        if not found:
            raise FileNotFoundError(f"No videos under {self.root} follow the {self.preset.name} layout.")
        return found

    def _select(self, candidates) -> list[VideoEntry]:
        subjects = self.preset.subjects(self.split) if self.preset else None
        if self.split != "all" and self.preset is None and any(split is None for *_, split in candidates):
            raise ValueError("split='train'/'test' needs a preset or a CSV with a `split` column; use split='all'.")
        entries = []
        for path, label, subject, split in candidates:
            if label not in self.labels:
                raise ValueError(f"{path}: label {label!r} is not one of the labels {list(self.labels)}.")
            in_split = split == self.split if split is not None else subjects is None or subject in subjects
            if self.split != "all" and not in_split:
                continue
            identity = subject or str(path.relative_to(self.root) if path.is_relative_to(self.root) else path)
            entries.append(VideoEntry(path, label, self.labels.index(label), identity))
        if not entries:
            raise FileNotFoundError(f"No videos of split {self.split!r} under {self.root}.")
        return entries

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Draw different frames and augmentations in each epoch (only matters with a `seed`)."""
        self.epoch = epoch

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, ()).item()))
        return np.random.default_rng([self.seed, self.epoch, index])

    def _indices(self, num_video_frames: int, rng: np.random.Generator) -> np.ndarray:
        if self.view == "pair":
            return sample_frame_pair(num_video_frames, rng)
        return sample_frame_indices(num_video_frames, self.num_frames, self.frame_sampling, rng)

    def load_frames(self, entry: VideoEntry, rng: np.random.Generator) -> np.ndarray:
        """Sample and decode the frames of one item: uint8 (F or 2, H, W, 3) at full size, uncropped."""
        if entry.path.is_dir():  # decode only the sampled frames
            indices = self._indices(len(list_frame_files(entry.path)), rng)
            return read_video(entry.path, frame_indices=indices)
        frames = read_video(entry.path)
        return frames[self._indices(len(frames), rng)]

    def _prepare(self, frames: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """uint8 (F, H, W, 3) -> float32 (3, F, resolution, resolution) in [0, 1]."""
        if self.crop is not None:
            frames = crop_frames(frames, *self.crop)
        frames = resize_longest(frames, self.resolution)
        if self.augment:
            if self.view == "pair":
                frames = random_flips(frames, rng)
            frames = self.color_jitter(frames, rng)
        frames = pad_to_square(frames, self.resolution)
        return rearrange(torch.from_numpy(frames).float() / 255, "f h w c -> c f h w")

    def __getitem__(self, index: int) -> dict:
        entry = self.entries[index]
        rng = self._rng(index)
        video = self._prepare(self.load_frames(entry, rng), rng)
        item = {"label": entry.label, "label_index": entry.label_index, "identity": entry.subject}
        if self.view == "pair":
            return {"reference": video[:, 0], "driving": video[:, 1], **item}
        return {"video": video, **item}
