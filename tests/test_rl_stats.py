"""`lightning_asym.rl` masked statistics against their loop references, hand-computed cases and padding."""

from __future__ import annotations

import math

import pytest
import torch
from rl_helpers import F64, TIGHT, lengths_to_mask, with_garbage

from lightning_asym.rl import (
    explained_variance,
    explained_variance_reference,
    masked_mean,
    masked_mean_reference,
    masked_whiten,
    masked_whiten_reference,
    nonempty_mean,
    nonempty_mean_reference,
)

# ------------------------------------------------------------------ masked statistics


def test_masked_mean_whiten_explained_variance() -> None:
    g = torch.Generator().manual_seed(13)
    x = 5 + 3 * torch.randn(4, 6, generator=g, dtype=F64)
    y = torch.randn(4, 6, generator=g, dtype=F64)
    mask = lengths_to_mask([6, 1, 0, 3], 6)
    torch.testing.assert_close(masked_mean(x, mask), masked_mean_reference(x, mask), **TIGHT)
    per_row = masked_mean(x, mask, dim=-1)
    torch.testing.assert_close(per_row[:2], torch.stack([x[0].mean(), x[1, 0]]), **TIGHT)
    assert per_row[2] == 0
    out = masked_whiten(x, mask)
    torch.testing.assert_close(out, masked_whiten_reference(x, mask), **TIGHT)
    torch.testing.assert_close(masked_whiten(with_garbage(x, mask, float("nan")), mask), out, **TIGHT)
    assert out[~mask].eq(0).all()
    white = out[mask]
    assert white.mean().abs() < 1e-12 and white.std().item() == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(
        explained_variance(y, x, mask), explained_variance_reference(y, x, mask), **TIGHT
    )
    torch.testing.assert_close(
        explained_variance(with_garbage(y, mask), with_garbage(x, mask), mask), explained_variance(y, x, mask)
    )
    assert explained_variance(x, x, mask) == 1.0
    constant = torch.full_like(x, x[mask].mean().item())
    assert explained_variance(constant, x, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(explained_variance(y, torch.ones_like(x), mask).item())
    assert math.isnan(explained_variance_reference(y, torch.ones_like(x), mask).item())
    # Whitening one valid entry centres it instead of dividing by zero.
    single = lengths_to_mask([1], 3)
    assert masked_whiten(torch.tensor([[4.0, 1.0, 2.0]]), single).eq(0).all()


def test_whitening_split_over_processes_equals_whitening_the_whole_batch() -> None:
    """Each of 2 simulated processes (threads) whitens its rows with `sum_over` an all-reduce: the
    result is the one-process whitening of the whole batch, padding and uneven counts included."""
    import threading

    g = torch.Generator().manual_seed(5)
    x = 5 + 3 * torch.randn(6, 5, generator=g, dtype=F64)
    mask = lengths_to_mask([5, 1, 0, 3, 4, 2], 5)
    parts = [(x[:2], mask[:2]), (x[2:], mask[2:])]  # 6 and 9 valid entries
    barrier, slots, out = threading.Barrier(2), [None, None], [None, None]

    def all_reduce(rank: int, t: torch.Tensor) -> torch.Tensor:
        slots[rank] = t
        barrier.wait()
        total = slots[0] + slots[1]
        barrier.wait()  # both have read before the next call overwrites
        return total

    def process(rank: int) -> None:
        xs, ms = parts[rank]
        out[rank] = masked_whiten(xs, ms, sum_over=lambda t: all_reduce(rank, t))

    threads = [threading.Thread(target=process, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    torch.testing.assert_close(torch.cat(out), masked_whiten_reference(x, mask), **TIGHT)
    torch.testing.assert_close(masked_whiten(x, mask, sum_over=lambda t: t), masked_whiten(x, mask), **TIGHT)


def test_masked_statistics_errors() -> None:
    with pytest.raises(ValueError, match="mask"):
        masked_mean(torch.zeros(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="mask"):
        masked_whiten(torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="returns"):
        explained_variance(torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 3))


# ------------------------------------------------------------------ minibatch statistics


@pytest.mark.parametrize(
    "counts",
    [[3, 0, 5, 1], [0, 0, 0, 7], [1, 1, 1, 1], [2.0, 0.0, 0.0, 0.0]],
)
def test_nonempty_mean_matches_reference(counts: list[float]) -> None:
    values = torch.tensor([1.02, 0.0, 0.97, 1.5], dtype=F64)
    c = torch.tensor(counts)
    torch.testing.assert_close(nonempty_mean(values, c), nonempty_mean_reference(values, c), **TIGHT)


def test_nonempty_mean_leaves_out_empty_minibatches() -> None:
    # two minibatches: one with ratio 1 over 12 tokens, one without a valid token (its masked
    # mean reads 0); the plain mean said 0.5, the statistic is 1
    ratio = torch.tensor([1.0, 0.0], dtype=F64)
    assert torch.stack([ratio[0], ratio[1]]).mean() == 0.5
    assert nonempty_mean(ratio, torch.tensor([12, 0])) == 1.0
    # garbage in an empty minibatch cannot leak in
    assert nonempty_mean(torch.tensor([2.0, float("nan")]), torch.tensor([1, 0])) == 2.0
    assert math.isnan(nonempty_mean(ratio, torch.zeros(2)).item())
    assert math.isnan(nonempty_mean_reference(ratio, torch.zeros(2)).item())
    with pytest.raises(ValueError, match="counts"):
        nonempty_mean(ratio, torch.ones(3))
