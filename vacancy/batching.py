"""The torch side of the training data: titles as a dataset, the samplers that batch them by
length (training and evaluation), and the collator that pads a batch. Apart from data.py, which
reads and cleans titles without torch (the ONNX tagger needs no torch)."""
from __future__ import annotations

import itertools

import numpy as np
import torch

from .data import TokenIds


class TitleDataset(torch.utils.data.Dataset):
    """Titles as token ids (TokenIds, or lists) with their binary targets; `lengths` in tokens."""

    def __init__(self, input_ids, targets: np.ndarray) -> None:
        self.input_ids, self.targets = input_ids, torch.from_numpy(targets)
        self.lengths = input_ids.lengths() if isinstance(input_ids, TokenIds) \
            else [len(ids) for ids in input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def __getitem__(self, i: int):
        return i, self.input_ids[i], self.targets[i]


class LengthGroupedSampler(torch.utils.data.DistributedSampler):
    """A DistributedSampler whose micro batches hold titles of similar length, so little compute
    goes to padding; the order is still random and a function of (seed, epoch) only (set_epoch).

    The shuffled, padded index list of DistributedSampler is cut into chunks of `group` global
    batches; each chunk is sorted by length and cut into global batches (one micro batch per
    rank); the full global batches are shuffled (a short last one stays last). Every rank gets
    the same number of items, hence of batches, as from DistributedSampler."""

    def __init__(self, lengths: list[int], batch_size: int, num_replicas: int, rank: int,
                 seed: int, group: int = 50) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.lengths, self.batch_size, self.group = lengths, batch_size, group

    def __iter__(self):
        generator = torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        world, span = self.num_replicas, self.batch_size * self.num_replicas
        order = np.resize(torch.randperm(len(self.lengths), generator=generator).numpy(),
                          self.total_size)  # repeated from its start, as DistributedSampler pads
        # a stable sort by (chunk of `group` global batches, length): each chunk sorted by length
        chunk = np.arange(self.total_size) // (span * self.group)
        lengths = np.asarray(self.lengths)[order]
        order = order[np.argsort(chunk * (lengths.max(initial=0) + 1) + lengths, kind="stable")]
        full = len(order) // span
        batches = order[:full * span].reshape(full, span)
        batches = batches[torch.randperm(full, generator=generator).numpy()]
        mine = batches[:, self.rank * self.batch_size:(self.rank + 1) * self.batch_size].ravel()
        short = order[full * span:]  # a short last global batch stays last; its length is a
        share = len(short) // world  # multiple of world (total_size is)
        return iter(np.concatenate([mine, short[self.rank * share:(self.rank + 1) * share]])
                    .tolist())


class ResumableSampler(torch.utils.data.Sampler):
    """A training sampler that can start an epoch part-way: `set_epoch(epoch, start)` makes the
    next pass skip the first `start` items of that epoch's order (the batches a run had consumed
    when it saved last/ mid-epoch). The order itself is the wrapped sampler's, a function of
    (seed, epoch, rank), so the skipped items are exactly those the saved run had seen."""

    def __init__(self, sampler: torch.utils.data.DistributedSampler) -> None:
        self.sampler, self.start = sampler, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.sampler.set_epoch(epoch)
        self.start = start

    def __iter__(self):
        return itertools.islice(iter(self.sampler), self.start, None)

    def __len__(self) -> int:  # what is left of the epoch
        return len(self.sampler) - self.start


class LengthSortedSampler(torch.utils.data.DistributedSampler):
    """Evaluation order: titles sorted by length and dealt out to the ranks in turn, so that each
    batch pads little. Scores are put back in dataset order by index after gathering
    (trainer.gather_by_index); the padding repeats are DistributedSampler's."""

    def __init__(self, lengths: list[int], num_replicas: int, rank: int) -> None:
        super().__init__(lengths, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.lengths = lengths

    def __iter__(self):
        order = np.resize(np.argsort(self.lengths, kind="stable"), self.total_size)
        return iter(order[self.rank:self.total_size:self.num_replicas].tolist())


class PadCollator:
    """Pad a batch to its longest title (rounded up to `multiple_of`), not to a fixed length."""

    def __init__(self, pad_id: int, multiple_of: int = 1) -> None:
        self.pad_id, self.multiple_of = pad_id, multiple_of

    def __call__(self, batch):
        index, ids, targets = zip(*batch)
        width = max(map(len, ids))
        width = -(-width // self.multiple_of) * self.multiple_of
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, seq in enumerate(ids):
            input_ids[row, :len(seq)] = torch.tensor(seq)
            attention_mask[row, :len(seq)] = 1
        return {"index": torch.tensor(index), "input_ids": input_ids,
                "attention_mask": attention_mask, "labels": torch.stack(targets)}
