"""Every random draw of a training sample is a function of (seed, epoch, index) alone."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from peft_vop.training.samplers import EpochShuffleSampler, SeededSamples


class Draws(Dataset):
    """Each item reports draws from all three global generators, and the epoch the dataset was told."""

    def __init__(self) -> None:
        self.epoch = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int):
        return (index, self.epoch, random.random(), float(np.random.rand()), torch.rand(()).item())


def test_permutation_depends_on_seed_and_epoch_only():
    sampler = EpochShuffleSampler(10, seed=3)
    first = list(sampler)
    assert sorted(index for _, index in first) == list(range(10))
    assert list(EpochShuffleSampler(10, seed=3)) == first
    sampler.set_epoch(1)
    second = list(sampler)
    assert [epoch for epoch, _ in second] == [1] * 10
    assert [index for _, index in second] != [index for _, index in first]
    assert list(EpochShuffleSampler(10, seed=4)) != first


def test_samples_do_not_depend_on_order_workers_or_caller_state():
    samples = SeededSamples(Draws(), seed=5)
    forward = [samples[(2, index)] for index in range(10)]
    random.seed(123)
    torch.manual_seed(123)
    np.random.seed(123)
    python_state, torch_state = random.getstate(), torch.get_rng_state()
    backward = [samples[(2, index)] for index in reversed(range(10))][::-1]
    assert forward == backward
    # The caller's generators are left as they were.
    assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)
    assert all(item[1] == 2 for item in forward)  # the dataset saw the epoch of the key
    assert samples[(3, 0)][2:] != forward[0][2:]  # another epoch draws anew

    loader = DataLoader(samples, sampler=EpochShuffleSampler(10, seed=5), batch_size=None, num_workers=2)
    loader.sampler.set_epoch(2)
    assert sorted((tuple(item) for item in loader), key=lambda item: item[0]) == forward
