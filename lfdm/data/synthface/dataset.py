"""SynthFace as a `torch.utils.data.Dataset` that renders every item on demand, and the identity splits."""

from __future__ import annotations

import logging

import numpy as np
import torch
from einops import rearrange

from lfdm.data.sampling import sample_frame_pair
from lfdm.data.synthface.appearance import Appearance, sample_appearance
from lfdm.data.synthface.expressions import SYNTHFACE_LABELS, label_index
from lfdm.data.synthface.render import render_frames

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
DEFAULT_NUM_IDENTITIES = {"train": 10_000, "test": 100}
# Identity seeds of split seed s: train s * 2**24 + i, test s * 2**24 + 2**23 + i. Disjoint for any sizes allowed.
_SPLIT_STRIDE = 1 << 24
_MAX_IDENTITIES = 1 << 23


def split_identities(split: str, num_identities: int, seed: int = 0) -> list[int]:
    """Identity seeds of a split: deterministic from `seed`; train and test never share an identity."""
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}; got {split!r}.")
    if not 0 < num_identities <= _MAX_IDENTITIES:
        raise ValueError(f"`num_identities` must be in [1, {_MAX_IDENTITIES}]; got {num_identities}.")
    if seed < 0:
        raise ValueError(f"`seed` must be a non-negative integer; got {seed}.")
    start = seed * _SPLIT_STRIDE + (0 if split == "train" else _MAX_IDENTITIES)
    return list(range(start, start + num_identities))


def identity_name(identity_seed: int) -> str:
    """The identity's name in dataset items and folder layouts, e.g. "00042"."""
    return f"{identity_seed:05d}"


class SynthFaceDataset(torch.utils.data.Dataset):
    """SynthFace videos rendered on demand; unlimited fresh data for both training stages.

    Views (items are dicts):
    - `"clip"`: `video` float32 (3, F, H, W) in [0, 1], `label`, `label_index`, `identity`.
    - `"pair"`: `reference` and `driving` float32 (3, H, W) in [0, 1] from one video, reference frame <= driving
      frame (frame 0 allowed), `label`, `label_index`, `identity`. Only the two frames are rendered.

    Indexing: with `length=None` the data set enumerates every (identity, label, take) once, `takes` takes each, in
    that order (good for evaluation). With `length=N` it is a virtual data set of N items; item i draws its identity,
    label and take from (seed, epoch, i), so any DataLoader sharding gives the same items and `set_epoch` gives
    fresh videos every epoch (call it before the DataLoader starts its workers; persistent workers keep the epoch
    they started with). `appearance` is the fraction of videos given a photographic look (`appearance.py`: backdrop,
    shading, skin grain, camera colour, blur, noise, JPEG), drawn per video so both frames of a pair share it; 0
    renders every video flat, as SynthFace always did. `labels` chooses the classes, in index order (`label_index`
    indexes it): any of the seven `SYNTHFACE_LABELS` (the default) and the extra actions `SYNTHFACE_EXTRA_LABELS`
    (e.g. `labels=("wink",)` or the seven plus "wink"). `num_identities=None` takes
    `DEFAULT_NUM_IDENTITIES[split]`. Identities are `split_identities(split, num_identities, seed)`, so train and
    test never share a person.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        resolution: int = 64,
        num_frames: int = 16,
        num_identities: int | None = None,
        view: str = "clip",
        seed: int = 0,
        length: int | None = None,
        takes: int = 1,
        labels: tuple[str, ...] | list[str] | None = None,
        appearance: float = 0.0,
    ):
        if view not in ("clip", "pair"):
            raise ValueError(f"`view` must be 'clip' or 'pair'; got {view!r}.")
        if length is not None and length < 1:
            raise ValueError(f"`length` must be a positive number of items or None; got {length}.")
        if takes < 1:
            raise ValueError(f"`takes` must be at least 1; got {takes}.")
        if num_frames < (2 if view == "pair" else 1):
            raise ValueError(f"`num_frames` must be at least 2 for pairs, 1 for clips; got {num_frames}.")
        if not 0 <= appearance <= 1:
            raise ValueError(f"`appearance` is a fraction of the videos, in [0, 1]; got {appearance}.")
        self.labels = tuple(SYNTHFACE_LABELS if labels is None else labels)
        for label in self.labels:
            label_index(label)
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ValueError(f"`labels` must name each label once, at least one; got {list(self.labels)}.")
        self.split = split
        self.resolution = resolution
        self.num_frames = num_frames
        self.view = view
        self.seed = seed
        self.takes = takes
        self.length = length
        self.appearance = float(appearance)
        self.epoch = 0
        count = DEFAULT_NUM_IDENTITIES.get(split, 1) if num_identities is None else num_identities
        self.identities = split_identities(split, count, seed)

    def __len__(self) -> int:
        if self.length is not None:
            return self.length
        return len(self.identities) * len(self.labels) * self.takes

    def set_epoch(self, epoch: int) -> None:
        """Choose the videos of a virtual (`length=N`) data set for this epoch; no effect otherwise."""
        self.epoch = int(epoch)

    def video_key(self, index: int) -> tuple[int, str, int]:
        """(identity seed, label, take) of item `index`."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a data set of {len(self)} items.")
        if self.length is None:
            identity, rest = divmod(index, len(self.labels) * self.takes)
            label, take = divmod(rest, self.takes)
            return self.identities[identity], self.labels[label], take
        rng = np.random.default_rng([self.seed, self.epoch, index, 0xDA7A])
        identity = self.identities[int(rng.integers(len(self.identities)))]
        return identity, self.labels[int(rng.integers(len(self.labels)))], int(rng.integers(1 << 30))

    def pair_indices(self, index: int) -> np.ndarray:
        """Frame indices (reference, driving) of pair item `index`: drawn with replacement and sorted."""
        return sample_frame_pair(self.num_frames, np.random.default_rng([self.seed, self.epoch, index, 0xFA1]))

    def look(self, identity: int, label: str, take: int) -> Appearance | None:
        """The photographic look of video (identity, label, take), or None for SynthFace's flat one."""
        if self.appearance == 0:
            return None
        rng = np.random.default_rng([self.seed, identity, label_index(label), take, 0xA99])
        return sample_appearance(rng) if rng.random() < self.appearance else None

    def __getitem__(self, index: int) -> dict:
        identity, label, take = self.video_key(index)
        item = {"label": label, "label_index": self.labels.index(label), "identity": identity_name(identity)}
        look = self.look(identity, label, take)
        options = {"resolution": self.resolution, "num_frames": self.num_frames, "appearance": look}
        if self.view == "clip":
            frames = render_frames(identity, label, take, **options)
            item["video"] = rearrange(torch.from_numpy(frames).float() / 255, "f h w c -> c f h w")
            return item
        indices = self.pair_indices(index)
        frames = render_frames(identity, label, take, indices, **options)
        images = rearrange(torch.from_numpy(frames).float() / 255, "n h w c -> n c h w")
        item["reference"], item["driving"] = images[0], images[1]
        return item
