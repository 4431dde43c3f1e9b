"""Episode metrics as torchmetrics, so they sync across processes like any other metric."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Sequence
from math import comb

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def task_id_hash(task_id: str) -> int:
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
        self.task.append(
            torch.tensor([task_id_hash(t) for t in task_ids], dtype=torch.long, device=self.device)
        )
        self.success.append(torch.as_tensor(successes, dtype=torch.long, device=self.device).flatten())

    def _wrap_compute(self, compute: Callable) -> Callable:
        # torchmetrics squeezes a one-element result to 0-d; pass^k is a vector `[max_k]` even
        # for max_k = 1, so callers can index it by k - 1 whatever max_k is
        wrapped = super()._wrap_compute(compute)

        @functools.wraps(compute)
        def vector(*args, **kwargs) -> torch.Tensor:
            return wrapped(*args, **kwargs).reshape(self.max_k)

        return vector

    def compute(self) -> torch.Tensor:
        tasks, succ = dim_zero_cat(self.task), dim_zero_cat(self.success)
        groups: dict[int, list[bool]] = {}
        for t, s in zip(tasks.tolist(), succ.tolist()):
            groups.setdefault(t, []).append(bool(s))
        return torch.tensor([pass_hat_k(groups, k) for k in range(1, self.max_k + 1)], dtype=torch.float)


CRITIC_COUNTS = ("tp", "fp", "fn", "tn", "reviews", "unparsed", "intervened", "revised_ok", "turns")


def review_outcome(label: dict | None, flagged: bool) -> str | None:
    """`tp`, `fp`, `fn` or `tn` for one reviewed proposal, None without an env label. A proposal is
    faulty when it deviates from the gold plan or breaks a policy rule (`label["deviation"]` or
    `label["violation"]`)."""
    if label is None:
        return None
    bad = bool(label.get("deviation") or label.get("violation"))
    return "tp" if bad and flagged else "fp" if flagged else "fn" if bad else "tn"


def critic_counts(trajectory) -> dict[str, int]:
    """The critic's record on one supervised trajectory, scored against the env's own judgement.

    Every reviewed proposal with an env label is a true positive (revise, faulty), false
    positive (revise, fine), false negative (approve, faulty) or true negative. A proposal is
    faulty when it deviates from the gold plan or breaks a policy rule (`label["deviation"]`
    or `label["violation"]`): a correct write made without the user's "yes" is still wrong. `intervened` counts turns with at least one revise;
    `revised_ok` those of them whose action that went out does not deviate (the revision
    fixed the problem, or the critic's alarm was false and the action was fine anyway).
    """
    c = dict.fromkeys(CRITIC_COUNTS, 0)
    c["turns"] = len(trajectory.turns)
    for turn in trajectory.turns:
        reviewed = [p for p in turn.proposals if p.review is not None]
        c["reviews"] += len(reviewed)
        c["unparsed"] += sum(not p.review.parsed for p in reviewed)
        for p in reviewed:
            outcome = review_outcome(p.label, flagged=not p.review.approved)
            if outcome is not None:
                c[outcome] += 1
        if any(not p.review.approved for p in reviewed):
            c["intervened"] += 1
            c["revised_ok"] += not turn.info.get("deviation", turn.parse_error is not None)
    return c


def ratio(num: float, den: float) -> float:
    """num / den, NaN when den is 0 (a rate with nothing to count is undefined, not 0)."""
    return num / den if den else float("nan")


def critic_rates(c: dict[str, float]) -> dict[str, float]:
    """`critic_precision`, `critic_recall`, `revision_success_rate`, `unparsed_rate` from summed counts."""
    return {
        "critic_precision": ratio(c["tp"], c["tp"] + c["fp"]),
        "critic_recall": ratio(c["tp"], c["tp"] + c["fn"]),
        "revision_success_rate": ratio(c["revised_ok"], c["intervened"]),
        "unparsed_rate": ratio(c["unparsed"], c["reviews"]),
    }


class Counts(Metric):
    """Named counters summed over batches and processes; `compute()` returns a dict of floats."""

    full_state_update = False

    def __init__(self, names: Sequence[str] = CRITIC_COUNTS, **kwargs) -> None:
        super().__init__(**kwargs)
        self.names = tuple(names)
        for n in self.names:
            self.add_state(n, default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, counts: dict[str, float]) -> None:
        for n in self.names:
            setattr(self, n, getattr(self, n) + float(counts.get(n, 0)))

    def compute(self) -> dict[str, float]:
        return {n: float(getattr(self, n)) for n in self.names}
