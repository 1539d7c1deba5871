"""Reproducible sampling: which videos form each batch, and the randomness each sample draws.

A resumed run must see exactly the batches and augmentations the interrupted run would have seen. Two pieces make
every random choice a function of `(seed, epoch, index)` alone, whatever the number of processes or loader workers
and wherever the run was stopped:

- [`EpochShuffleSampler`] orders the training set by a permutation drawn from `(seed, epoch)`, and yields
  `(epoch, index)` keys;
- [`SeededSamples`] hands the epoch to datasets that seed their own draws (`set_epoch`, like
  `peft_vop.data.VideoTextDataset`, which picks frames, crop and one of a video's captions from
  `(seed, epoch, video)`), and reseeds Python's, NumPy's and torch's global generators from `(seed, epoch, index)`
  around each `dataset[index]` for datasets that draw from those, so no draw depends on what ran before.

The epoch travels inside the sampler's keys rather than as dataset state, so it reaches loader workers (even
persistent ones) without any `set_epoch` call on the dataset.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sized

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler


def sample_seed(seed: int, epoch: int, index: int | None = None) -> int:
    """
    A 64-bit seed for one sample of one epoch (or, without `index`, for the epoch's permutation), decorrelated from
    its neighbours by `numpy.random.SeedSequence`.
    """
    spawn_key = (epoch,) if index is None else (epoch, index)
    return int(np.random.SeedSequence(seed, spawn_key=spawn_key).generate_state(1, np.uint64)[0])


class EpochShuffleSampler(Sampler[tuple[int, int]]):
    """
    Shuffles `range(num_samples)` with a permutation fixed by `(seed, epoch)` and yields `(epoch, index)` keys for
    [`SeededSamples`].

    Every process builds the same permutation, so `accelerate` can split each batch across processes without
    synchronising generators; `accelerate`'s `DataLoader.set_epoch` reaches [`set_epoch`].

    Args:
        num_samples (`int`): size of the dataset.
        seed (`int`): the run's seed.
        shuffle (`bool`, defaults to `True`): `False` yields indices in order (still keyed by epoch).
    """

    def __init__(self, num_samples: int, seed: int, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError(f"`num_samples` must be at least 1; got {num_samples}.")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of `epoch`."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch))
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = range(self.num_samples)
        epoch = self.epoch
        for index in order:
            yield epoch, index


class SeededSamples(Dataset):
    """
    Wraps a map-style dataset so that `self[(epoch, index)]` returns `dataset[index]` of that epoch: the dataset's
    own `set_epoch(epoch)` is called first if it has one, and the global random generators are seeded from
    `(seed, epoch, index)` (the caller's generator states are restored afterwards).

    Args:
        dataset (`torch.utils.data.Dataset`): any map-style dataset with `__len__`.
        seed (`int`): the run's seed.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        if not isinstance(dataset, Sized):
            raise TypeError(f"`dataset` must be a map-style dataset with __len__; got {type(dataset).__name__}.")
        self.dataset = dataset
        self.seed = seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        seed = sample_seed(self.seed, epoch, index)
        python_state, numpy_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                np.random.seed(seed % 2**32)
                torch.manual_seed(seed)
                return self.dataset[index]
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)
