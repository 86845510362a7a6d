"""The training data stream: an endless, reproducible sequence of samples over a data set, split into micro-batches
per process, so that a resumed run sees the very batches the uninterrupted run would have seen."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lfdm.data.factory import DataConfig, build_dataset

# Items per SynthFace "epoch": the stream's shuffling unit; every epoch renders new videos (`set_epoch`).
SYNTHFACE_EPOCH_LENGTH = 100_000


def training_dataset(data: DataConfig, *, view: str) -> Dataset:
    """The training split a `DataConfig` names, in the `view` "pair" (stage one) or "clip" (stage two); SynthFace
    as a virtual data set of `SYNTHFACE_EPOCH_LENGTH` items per epoch.

    Real videos draw their frames and augmentations from torch's global generator, which `SampleStream` seeds per
    sample, so the stream stays reproducible.
    """
    return build_dataset(data, view=view, split="train", length=SYNTHFACE_EPOCH_LENGTH)


@contextlib.contextmanager
def seeded_global_rngs(seed: int) -> Iterator[None]:
    """Seed Python's, NumPy's and torch's global generators inside the block; restore their states after it."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed % 2**63)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)


class SampleStream(Dataset):
    """An endless, reproducible stream over a data set: item `n` is a pure function of (seed, n).

    Sample numbers run through shuffled epochs (epoch e uses permutation(seed, e)); each item is produced with the
    global RNGs seeded from (seed, n), so random pair choices and augmentations repeat exactly on resume.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.size = len(dataset)
        if self.size == 0:
            raise ValueError("the training data set is empty; check data.root and data.preset.")
        self._permutations: dict[int, np.ndarray] = {}

    def _index(self, sample: int) -> int:
        epoch, position = divmod(sample, self.size)
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.size)}
        return int(self._permutations[epoch][position])

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, sample: int):
        if hasattr(self.dataset, "set_epoch"):  # virtual data sets (SynthFace) draw new videos every epoch
            self.dataset.set_epoch(sample // self.size)
        item_seed = int(np.random.SeedSequence([self.seed, sample]).generate_state(1, np.uint64)[0])
        with seeded_global_rngs(item_seed):
            return self.dataset[self._index(sample)]


class StreamBatchSampler(Sampler[list[int]]):
    """Batches of sample numbers for one process, starting at micro-batch `start`.

    Micro-batch q of process p holds samples ((q * world + p) * batch_size + j for j < batch_size), so every
    process reads its own slice and the stream depends only on the micro-batch number.
    """

    def __init__(self, batch_size: int, *, start: int = 0, process_index: int = 0, num_processes: int = 1) -> None:
        self.batch_size, self.start = batch_size, start
        self.process_index, self.num_processes = process_index, num_processes

    def __iter__(self) -> Iterator[list[int]]:
        micro_batch = self.start
        while True:
            first = (micro_batch * self.num_processes + self.process_index) * self.batch_size
            yield list(range(first, first + self.batch_size))
            micro_batch += 1

    def __len__(self) -> int:
        return 2**62


def stream_loader(dataset: Dataset, *, seed: int, batch_size: int, start: int, accelerator, num_workers: int):
    """An endless DataLoader for this process that begins at micro-batch `start` of the (seed)-stream."""
    sampler = StreamBatchSampler(
        batch_size, start=start, process_index=accelerator.process_index, num_processes=accelerator.num_processes
    )
    return DataLoader(
        SampleStream(dataset, seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        pin_memory=accelerator.device.type == "cuda",
        persistent_workers=num_workers > 0,
    )
