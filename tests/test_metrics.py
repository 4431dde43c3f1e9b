from __future__ import annotations

import math

import pytest
import torch

from lightning_asym.metrics import InterventionRate, PassHatK, pass_hat_k


def test_pass_hat_k_hand_computed():
    # task a: 3 of 4 trials succeed; task b: 1 of 4; task c: 4 of 4
    ids = ["a"] * 4 + ["b"] * 4 + ["c"] * 4
    succ = [1, 1, 0, 1] + [0, 0, 1, 0] + [1, 1, 1, 1]
    m = PassHatK(max_k=4)
    m.update(ids[:5], succ[:5])  # updates may split a task across batches
    m.update(ids[5:], succ[5:])
    got = m.compute()
    # pass^1 = mean(c/n) = (3/4 + 1/4 + 1) / 3
    assert got[0].item() == pytest.approx((0.75 + 0.25 + 1) / 3)
    # pass^2: a: C(3,2)/C(4,2)=3/6, b: 0, c: 1
    assert got[1].item() == pytest.approx((0.5 + 0 + 1) / 3)
    # pass^3: a: 1/4, b: 0, c: 1 ; pass^4: a: 0, b: 0, c: 1
    assert got[2].item() == pytest.approx((0.25 + 1) / 3)
    assert got[3].item() == pytest.approx(1 / 3)


def test_pass_hat_k_skips_tasks_with_too_few_trials():
    assert math.isnan(pass_hat_k({"a": [True]}, 2))
    assert pass_hat_k({"a": [True], "b": [True, False]}, 2) == 0.0


def test_pass_hat_k_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 task ids but 1"):
        PassHatK().update(["a", "b"], [1])


def test_intervention_rate():
    m = InterventionRate()
    m.update(1, 4)
    m.update(2, 4)
    assert m.compute().item() == pytest.approx(3 / 8)
    assert torch.isfinite(InterventionRate().compute())
