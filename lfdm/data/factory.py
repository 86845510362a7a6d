"""The one place that turns a data set name into a data set: SynthFace (rendered on demand) or a folder of videos.

Every command and both training stages name their data the same way: `dataset` (one of `DATASETS`) and, for real
videos, `root` (on the command line `--data NAME --data-root DIR`).

>>> clips = make_dataset("synthface", split="test", resolution=64, num_frames=16, num_identities=1)
>>> len(clips), sorted(clips[0])
(7, ['identity', 'label', 'label_index', 'video'])
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lfdm.configuration import check_choice, check_positive
from lfdm.data.sampling import FRAME_SAMPLING_MODES
from lfdm.framing import DATASET_FRAMINGS, WHOLE_PICTURE, ModelFraming

FRAMING_FILE = "framing.json"  # a prepared folder's framing (`lfdm.data.prepare`, which writes it)

if TYPE_CHECKING:
    from torch.utils.data import Dataset


@dataclass(frozen=True)
class DatasetDescription:
    """What a command needs to know about a data set before reading it (`describe_dataset`)."""

    resolution: int  # frame side in px when a command is given none
    num_frames: int  # frames per video when a command is given none
    rendered: bool  # True: rendered on demand from `num_identities` identities of a seed; False: videos under `root`
    has_looks: bool  # True: its videos can be given a photographic look (`appearance`); photographed data cannot


# "synthface": rendered on demand; "mug" | "mhad" | "natops": the official layout, labels and subject split of
# that data set under a folder; "folder": root/<label>/.../<video>, or labels and splits from a CSV (`label_from`).
# Real videos default to the paper's size: 128 px, 40 frames.
_PHOTOGRAPHED = DatasetDescription(resolution=128, num_frames=40, rendered=False, has_looks=False)
DATASET_DESCRIPTIONS = {
    "synthface": DatasetDescription(resolution=64, num_frames=16, rendered=True, has_looks=True),
    "mug": _PHOTOGRAPHED,
    "mhad": _PHOTOGRAPHED,
    "natops": _PHOTOGRAPHED,
    "folder": _PHOTOGRAPHED,
}
DATASETS = tuple(DATASET_DESCRIPTIONS)


def describe_dataset(dataset: str) -> DatasetDescription:
    """The `DatasetDescription` of `dataset` (one of `DATASETS`); ValueError for any other name."""
    check_choice("dataset", dataset, DATASETS)
    return DATASET_DESCRIPTIONS[dataset]


def make_dataset(
    dataset: str,
    *,
    split: str,
    resolution: int,
    num_frames: int,
    view: str = "clip",
    root: str | Path | None = None,
    label_from: str = "folder",
    labels: list[str] | tuple[str, ...] | None = None,
    frame_sampling: str = "uniform",
    augment: bool = False,
    num_identities: int | None = None,
    seed: int = 0,
    draw_seed: int | None = None,
    length: int | None = None,
    appearance: float = 0.0,
) -> Dataset:
    """The data set `dataset` (one of `DATASETS`) in the view "clip" or "pair" (`SynthFaceDataset` or
    `VideoFolderDataset`, whose docstrings give the items' shapes).

    Both: `split` "train" | "test" (real videos also "all"), square frames of `resolution` px, `num_frames` per
    clip, `labels` (None: every label of the data set). SynthFace: `num_identities` of the split (None: its
    default), `seed` of the identities and renders, `length` items of a virtual data set (None: every identity x
    label once), `appearance` the fraction of videos with a photographic look (0: all flat). Real videos, under
    `root`: `label_from`, `frame_sampling`, `augment`, and `draw_seed` (None: frame and augmentation draws come
    from torch's global generator).
    """
    check_choice("dataset", dataset, DATASETS)
    if dataset == "synthface":
        from lfdm.data.synthetic import SynthFaceDataset

        return SynthFaceDataset(
            split,
            resolution=resolution,
            num_frames=num_frames,
            num_identities=num_identities,
            view=view,
            seed=seed,
            length=length,
            labels=labels,
            appearance=appearance,
        )
    if not root:
        raise ValueError(
            f"data set {dataset!r} reads videos from a folder, which is not set: pass --data-root DIR (in a run "
            "config: `root: /path/to/videos` in the data section)."
        )
    from lfdm.data.videos import VideoFolderDataset

    return VideoFolderDataset(
        root,
        preset=None if dataset == "folder" else dataset,
        split=split,
        labels=labels,
        label_from=label_from,
        view=view,
        resolution=resolution,
        num_frames=num_frames,
        frame_sampling=frame_sampling,
        augment=augment,
        seed=draw_seed,
    )


@dataclass
class DataConfig:
    """Where training frames come from (a run config's `data` section). SynthFace renders on the fly; the others
    read real videos under `root`."""

    dataset: str = "synthface"  # one of DATASETS (see there)
    root: str | None = None  # folder of the videos (all but synthface); also `--data-root` on the command line
    label_from: str = "folder"  # "folder" data sets: "folder", or a CSV with columns path, label[, subject, split]
    resolution: int = 64  # frame side in px after aspect-preserving resize (INTER_AREA) + black padding
    num_frames: int = 40  # frames per clip for the diffusion model (SynthFace: frames per rendered video)
    dm_frame_sampling: str = "very_random"  # stage two clip frames: "uniform" | "random" | "very_random" (stage
    # one always takes two frames of a video, with replacement, sorted: reference first)
    num_identities: int | None = None  # SynthFace: training identities (None: the data set's default, 10 000)
    seed: int = 0  # SynthFace: seed of the identities and renders (same seed = same data set)
    augment: bool = True  # real videos: official augmentation (pairs: time or horizontal flip + colour jitter;
    # clips: colour jitter). SynthFace has none (its items are renders of many random identities)
    num_workers: int = 0  # DataLoader worker processes (0 = load in the training process)
    appearance: float = 0.0  # SynthFace, training split: fraction of videos given a photographic look (backdrop,
    # shading, skin grain, camera colour, blur, noise, JPEG; lfdm.data.synthface.appearance); 0 = all flat
    labels: list[str] | None = None  # the classes to serve, in index order; None = every label of the data set
    # (SynthFace: its seven; name extra actions such as "wink" here to render them, e.g. the seven plus "wink")

    def __post_init__(self) -> None:
        check_choice("data.dataset", self.dataset, DATASETS)
        check_choice("data.dm_frame_sampling", self.dm_frame_sampling, FRAME_SAMPLING_MODES)
        check_positive("data", resolution=self.resolution, num_frames=self.num_frames)
        if not 0 <= self.appearance <= 1:
            raise ValueError(f"data.appearance is a fraction of the videos, in [0, 1]; got {self.appearance}.")
        if self.labels is not None:
            self.labels = [str(label) for label in self.labels]
            if not self.labels:
                raise ValueError("data.labels is an empty list; give the labels to use, or null for all of them.")


def build_dataset(data: DataConfig, *, view: str, split: str = "train", **overrides: Any) -> Dataset:
    """The data set a `DataConfig` names, in the `view` "pair" (stage one) or "clip" (stage two); `overrides` are
    further `make_dataset` arguments (e.g. `length`).

    Augmentation (and SynthFace's photographic look) is for training only. A plain folder whose labels are its
    sub-folder names has no subject split: it is read whole, and augmented when read for training.
    """
    training = split == "train"
    if data.dataset == "folder" and data.label_from == "folder":
        split = "all"
    arguments: dict[str, Any] = {
        "split": split,
        "resolution": data.resolution,
        "num_frames": data.num_frames,
        "view": view,
        "root": data.root,
        "label_from": data.label_from,
        "frame_sampling": data.dm_frame_sampling,
        "augment": data.augment and training,
        "num_identities": data.num_identities,
        "seed": data.seed,
        "labels": data.labels,
    }
    if describe_dataset(data.dataset).has_looks:
        arguments["appearance"] = data.appearance if training else 0.0
    return make_dataset(data.dataset, **(arguments | overrides))


def dataset_framing(dataset: str, root: str | Path | None = None) -> ModelFraming:
    """How the pictures of `dataset` (one of `DATASETS`) are framed, for the models trained on it to save.

    SynthFace's is measured now from its identities (`lfdm.data.synthface.framing.measure_framing`, about a second);
    the authors' data sets have theirs in `lfdm.framing.DATASET_FRAMINGS`; a folder of videos is read whole (resized
    and padded), so a model trained on it animates whole pictures, unless `prepare-videos` framed its clips: then
    its `root` holds that framing (`lfdm.data.prepare.FRAMING_FILE`).
    """
    check_choice("dataset", dataset, DATASETS)
    if dataset == "folder" and root is not None and (Path(root) / FRAMING_FILE).is_file():
        return ModelFraming.from_config(json.loads((Path(root) / FRAMING_FILE).read_text()))
    if dataset == "synthface":
        from lfdm.data.synthface.framing import measure_framing

        return measure_framing()
    return DATASET_FRAMINGS.get(dataset, WHOLE_PICTURE)
