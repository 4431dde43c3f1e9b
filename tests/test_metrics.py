from __future__ import annotations

import math

import pytest

from lightning_asym.metrics import CRITIC_COUNTS, Counts, PassHatK, critic_counts, critic_rates, pass_hat_k
from lightning_asym.types import Action, Proposal, Review, Trajectory, Turn


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


@pytest.mark.parametrize("max_k", [1, 2, 4])
def test_pass_hat_k_is_a_vector_for_every_max_k(max_k):
    m = PassHatK(max_k=max_k)
    m.update(["a", "a", "b"], [True, False, True])
    got = m.compute()
    assert got.shape == (max_k,)
    assert got[0].item() == pytest.approx((0.5 + 1.0) / 2)  # pass^1: mean success per task


def test_pass_hat_k_skips_tasks_with_too_few_trials():
    assert math.isnan(pass_hat_k({"a": [True]}, 2))
    assert pass_hat_k({"a": [True], "b": [True, False]}, 2) == 0.0


def test_pass_hat_k_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 task ids but 1"):
        PassHatK().update(["a", "b"], [1])


def _turn(index, proposals, deviation):
    return Turn(index, "", Action.reply("x"), info={"deviation": deviation}, proposals=proposals)


def _p(verdict, deviation, parsed=True):
    return Proposal(
        "x", Action.reply("x"), review=Review(verdict, parsed=parsed), label={"deviation": deviation}
    )


def test_critic_counts_against_hand_count():
    t = Trajectory(
        "a",
        turns=[
            _turn(0, [_p("approve", False)], False),  # tn
            _turn(1, [_p("revise", True), _p("approve", False)], False),  # tp, tn; intervened, fixed
            _turn(2, [_p("revise", False), _p("revise", True)], True),  # fp, tp; intervened, not fixed
            _turn(3, [_p("approve", True, parsed=False)], True),  # fn, unparsed
            _turn(4, [], False),  # no critic this turn
        ],
    )
    c = critic_counts(t)
    assert c == {
        "tp": 2, "fp": 1, "fn": 1, "tn": 2, "reviews": 7 - 1, "unparsed": 1,
        "intervened": 2, "revised_ok": 1, "turns": 5,
    }  # fmt: skip
    rates = critic_rates(c)
    assert rates["critic_precision"] == pytest.approx(2 / 3)
    assert rates["critic_recall"] == pytest.approx(2 / 3)
    assert rates["revision_success_rate"] == pytest.approx(1 / 2)
    assert rates["unparsed_rate"] == pytest.approx(1 / 6)


def test_a_policy_violation_counts_as_faulty_even_on_the_gold_plan():
    p = Proposal(
        "x", Action.reply("x"), review=Review("revise"), label={"deviation": False, "violation": "no yes"}
    )
    assert critic_counts(Trajectory("a", turns=[_turn(0, [p], False)]))["tp"] == 1


def test_critic_rates_are_nan_when_nothing_to_count():
    rates = critic_rates(dict.fromkeys(CRITIC_COUNTS, 0))
    assert all(math.isnan(v) for v in rates.values())


def test_counts_metric_sums_batches():
    m = Counts(["a", "b"])
    m.update({"a": 1, "b": 2})
    m.update({"a": 3})
    assert m.compute() == {"a": 4.0, "b": 2.0}
