"""A shuffled train loader that a resumed fit continues where it stopped.

A plain `DataLoader(shuffle=True)` restarts its epoch when a fit resumes from a mid-epoch
checkpoint, so a LoRA fine-tune cut at step 200 of a 650-step epoch and resumed sees the same
first 200 batches again, and never the rest of the split (Lightning warns: "your dataloader is not
resumable"). `ResumableLoader` implements Lightning's `state_dict` / `load_state_dict` interface:
the checkpoint keeps the epoch and the number of batches the loop has consumed, and the resumed
loader draws the same permutation and starts after them.

Each epoch's order is a permutation seeded by `(seed, epoch)`; `seed` defaults to
`torch.initial_seed()` when the loader is built, i.e. the run's `seed_everything`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

log = logging.getLogger(__name__)


class EpochPermutation(Sampler[int]):
    """Indices `0..size-1` in a permutation seeded by `(seed, epoch)`, optionally from an offset."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.seed = seed
        self.epoch = 0
        self.resume: tuple[int, int] | None = None  # (epoch, indices to skip) of a resumed epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of each epoch."""
        self.epoch = epoch

    def order(self) -> list[int]:
        g = torch.Generator()
        g.manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63 - 1))
        return torch.randperm(self.size, generator=g).tolist()

    def skip(self) -> int:
        """Indices the next iteration skips: those consumed before the checkpoint, in its epoch only."""
        return self.resume[1] if self.resume and self.resume[0] == self.epoch else 0

    def __iter__(self) -> Iterator[int]:
        start, self.resume = self.skip(), None
        return iter(self.order()[start:])

    def __len__(self) -> int:
        return self.size


class ResumableLoader(DataLoader):
    """`DataLoader` over a shuffled map-style dataset whose position survives a checkpoint."""

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.order = EpochPermutation(len(dataset), torch.initial_seed() if seed is None else seed)
        # Lightning rebuilds the loader with a distributed sampler around ours on several processes;
        # each rank then reads its share of the same permutation, and a resumed epoch starts over.
        sampler = kwargs.pop("sampler", None) or self.order
        self.foreign = sampler is not self.order
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, collate_fn=collate_fn, **kwargs)  # type: ignore[arg-type]
        self.served = 0  # batches of this epoch handed to the loop (`tests/test_resumable.py` checks
        # that, at a checkpoint, Lightning has drawn no batch beyond the one it trained on)

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        self.served = self.order.skip() // int(self.batch_size or 1)
        for batch in super().__iter__():
            self.served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.order.epoch, "batches": self.served, "seed": self.order.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if self.foreign:
            log.warning("the resumed epoch starts over: its position is kept on one process only")
            return
        self.order.seed = int(state.get("seed", self.order.seed))
        self.order.resume = (int(state["epoch"]), int(state["batches"]) * int(self.batch_size or 1))
