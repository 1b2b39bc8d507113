"""Length-grouped batching: DistributedSampler's semantics (shards of equal size covering every
title, a function of seed and epoch), with batches of similar length."""
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from vacancy.config import TrainConfig
from vacancy.data import (LengthGroupedSampler, LengthSortedSampler, PadCollator,
                          ResumableSampler, TitleDataset)
from vacancy.trainer import make_loader

LENGTHS = list(np.random.default_rng(0).integers(3, 30, size=1003))


def shards(world: int, epoch: int, batch_size: int = 8, seed: int = 42) -> list[list[int]]:
    out = []
    for rank in range(world):
        sampler = LengthGroupedSampler(LENGTHS, batch_size, world, rank, seed, group=5)
        sampler.set_epoch(epoch)
        out.append(list(sampler))
    return out


def padded_tokens(indices: list[int], batch_size: int = 8) -> int:
    batches = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    return sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_are_those_of_distributed_sampler_in_size_and_cover_every_title(world):
    parts = shards(world, epoch=0)
    plain = [list(DistributedSampler(LENGTHS, world, rank, seed=42)) for rank in range(world)]
    assert [len(p) for p in parts] == [len(p) for p in plain]  # so the same number of batches
    assert set().union(*parts) == set(range(len(LENGTHS)))
    assert sorted(sum(parts, [])) == sorted(sum(plain, []))  # the same padding repeats


def test_order_is_a_function_of_seed_and_epoch():
    assert shards(2, epoch=3) == shards(2, epoch=3)  # a resumed run sees the same batches
    assert shards(2, epoch=3) != shards(2, epoch=4)
    assert shards(2, epoch=3) != shards(2, epoch=3, seed=7)


def loop_order(lengths, batch_size, world, rank, seed, epoch, group):
    """LengthGroupedSampler's order written as plain loops (how it read before it was vectorised):
    a resumed run must see the batches its checkpoint's code would have shown it."""
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    total = math.ceil(len(lengths) / world) * world
    order = torch.randperm(len(lengths), generator=generator).tolist()
    order = (order * math.ceil(total / len(lengths)))[:total]
    span, batches = batch_size * world, []
    for start in range(0, total, span * group):
        chunk = sorted(order[start:start + span * group], key=lengths.__getitem__)
        batches += [chunk[i:i + span] for i in range(0, len(chunk), span)]
    short = batches.pop() if len(batches[-1]) < span else None
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    if short:
        batches.append(short)
    return [i for b in batches for i in b[rank * (len(b) // world):(rank + 1) * (len(b) // world)]]


@pytest.mark.parametrize("n, batch_size, world, group",
                         [(1003, 8, 1, 5), (1003, 8, 3, 5), (50, 4, 2, 50), (7, 3, 2, 1)])
def test_order_is_that_of_the_plain_loops(n, batch_size, world, group):
    lengths = LENGTHS[:n]
    for rank in range(world):
        sampler = LengthGroupedSampler(lengths, batch_size, world, rank, 42, group=group)
        sampler.set_epoch(2)
        assert list(sampler) == loop_order(lengths, batch_size, world, rank, 42, 2, group)


def test_batches_hold_titles_of_similar_length_in_random_order():
    grouped = shards(1, epoch=0)[0]
    plain = list(DistributedSampler(LENGTHS, 1, 0, seed=42))
    real = sum(LENGTHS)
    assert padded_tokens(grouped) / real < 1.2 < padded_tokens(plain) / real
    widths = [max(LENGTHS[i] for i in grouped[j:j + 8]) for j in range(0, len(grouped), 8)]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)


def test_training_loader_uses_it_when_asked():
    dataset = TitleDataset([[1] * n for n in LENGTHS], np.zeros((len(LENGTHS), 2), np.float32))
    collate = PadCollator(0)
    grouped = make_loader(dataset, TrainConfig(group_by_length=True), collate, train=True)
    plain = make_loader(dataset, TrainConfig(group_by_length=False), collate, train=True)
    # resumable: set_epoch(epoch, start) skips what a run saved mid-epoch had consumed
    assert isinstance(grouped.sampler, ResumableSampler)
    assert isinstance(grouped.sampler.sampler, LengthGroupedSampler)
    assert not isinstance(plain.sampler.sampler, LengthGroupedSampler)
    assert len(grouped) == len(plain)
    for loader in (grouped, plain):
        loader.sampler.set_epoch(3)
        whole = list(loader.sampler)
        loader.sampler.set_epoch(3, 40)
        assert list(loader.sampler) == whole[40:] and len(loader.sampler) == len(whole) - 40
    val = make_loader(dataset, TrainConfig(group_by_length=True), collate, train=False)
    assert isinstance(val.sampler, LengthSortedSampler)


@pytest.mark.parametrize("world", [1, 2])
def test_evaluation_order_is_sorted_by_length_and_sharded_like_distributed_sampler(world):
    parts = [list(LengthSortedSampler(LENGTHS, world, rank)) for rank in range(world)]
    plain = [list(DistributedSampler(LENGTHS, world, rank, shuffle=False))
             for rank in range(world)]
    assert [len(p) for p in parts] == [len(p) for p in plain]
    assert set().union(*parts) == set(range(len(LENGTHS)))
    for part in parts:
        assert [LENGTHS[i] for i in part[:-1]] == sorted(LENGTHS[i] for i in part[:-1])
        assert padded_tokens(part, 32) / sum(LENGTHS[i] for i in part) < 1.1
