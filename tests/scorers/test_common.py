"""Scorer plumbing: device choice, batching without dropped items."""


import pytest
import torch

from steercore.scorers.common import batched, choose_device

torch.set_num_threads(1)


def test_device_explicit_wins_and_auto_follows_cuda():
    assert choose_device("cpu") == torch.device("cpu")
    assert choose_device(torch.device("meta")) == torch.device("meta")
    assert choose_device().type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_batched_keeps_the_remainder():
    chunks = list(batched(list(range(53)), 50, "x", progress=False))
    assert [len(c) for c in chunks] == [50, 3]
    assert sum(chunks, []) == list(range(53))
    assert list(batched([], 4, "x", progress=False)) == []


