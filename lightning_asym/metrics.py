"""Episode metrics as torchmetrics, so they sync across processes like any other metric."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from math import comb

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def task_key(task_id: str) -> int:
    """A stable integer for a task id (metric states must be tensors)."""
    return zlib.crc32(task_id.encode())


def pass_hat_k(successes: dict[object, list[bool]], k: int) -> float:
    """tau-bench's pass^k: mean over tasks of C(c, k) / C(n, k); tasks with n < k are skipped."""
    vals = [comb(sum(s), k) / comb(len(s), k) for s in successes.values() if len(s) >= k]
    return sum(vals) / len(vals) if vals else float("nan")


class PassHatK(Metric):
    """pass^k for k = 1..max_k over repeated trials of the same tasks.

    `update(task_ids, successes)` takes one entry per episode; `compute()` returns a tensor
    `[max_k]` whose entry k-1 is pass^k (NaN where no task has k trials).
    """

    full_state_update = False

    def __init__(self, max_k: int = 4, **kwargs) -> None:
        super().__init__(**kwargs)
        if max_k < 1:
            raise ValueError(f"max_k must be >= 1, got {max_k}")
        self.max_k = max_k
        self.add_state("task", default=[], dist_reduce_fx="cat")
        self.add_state("success", default=[], dist_reduce_fx="cat")

    def update(self, task_ids: Sequence[str], successes: Sequence[bool] | torch.Tensor) -> None:
        if len(task_ids) != len(successes):
            raise ValueError(f"got {len(task_ids)} task ids but {len(successes)} successes")
        self.task.append(torch.tensor([task_key(t) for t in task_ids], dtype=torch.long, device=self.device))
        self.success.append(torch.as_tensor(successes, dtype=torch.long, device=self.device).flatten())

    def compute(self) -> torch.Tensor:
        tasks, succ = dim_zero_cat(self.task), dim_zero_cat(self.success)
        groups: dict[int, list[bool]] = {}
        for t, s in zip(tasks.tolist(), succ.tolist()):
            groups.setdefault(t, []).append(bool(s))
        return torch.tensor([pass_hat_k(groups, k) for k in range(1, self.max_k + 1)], dtype=torch.float)


class InterventionRate(Metric):
    """Fraction of turns at which the critic rejected at least one proposal."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("intervened", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("turns", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, intervened: int, turns: int) -> None:
        self.intervened += intervened
        self.turns += turns

    def compute(self) -> torch.Tensor:
        return self.intervened / self.turns.clamp(min=1)
