"""A length-grouped sampler: batches of similar length (less padding), still shuffled (seeded).

Indices are shuffled, cut into mega-batches of ``batch_size * mega_batch_mult``, each sorted by
length (longest first) and split into batches; the batch order is shuffled again, except that the
batch holding the longest example goes first so an out-of-memory shows up at step one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class LengthGroupedSampler(Sampler[int]):
    def __init__(self, lengths: Sequence[int], batch_size: int, mega_batch_mult: int = 50, seed: int = 0) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.mega = batch_size * max(1, mega_batch_mult)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=g).tolist()
        batches: list[list[int]] = []
        for start in range(0, len(order), self.mega):
            chunk = sorted(order[start: start + self.mega], key=lambda i: -self.lengths[i])
            batches += [chunk[i: i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        if not batches:
            return iter([])
        perm = torch.randperm(len(batches), generator=g).tolist()
        batches = [batches[i] for i in perm]
        longest = max(range(len(batches)), key=lambda b: max(self.lengths[i] for i in batches[b]))
        batches[0], batches[longest] = batches[longest], batches[0]
        return iter([i for b in batches for i in b])
