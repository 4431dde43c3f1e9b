"""TauRuleCritic: each rule on a hand-made conversation, and no false alarm on τ-bench gold replays."""

from __future__ import annotations

import pytest

from lightning_asym.review.base import ReviewRequest
from lightning_asym.review.tau_rules import TauRuleCritic
from lightning_asym.types import Action, Message, Task

TASK = Task(id="t", split="test", instruction="")
LOOKED_UP = [
    Message("user", "Hi, I am Ann Lee in 12345; cancel order #W1 please, I ordered it by mistake."),
    Message("tool", '"ann_lee_1"', name="find_user_id_by_name_zip"),
    Message(
        "tool",
        '{"order_id": "#W1", "user_id": "ann_lee_1", "payment_method_id": "paypal_7"}',
        name="get_order_details",
    ),
]


def verdict(messages, action, domain="retail"):
    (review,) = TauRuleCritic(domain).review([ReviewRequest(messages, "", action, None, TASK)])
    return review.verdict, review.feedback


@pytest.mark.parametrize(
    ("messages", "action", "rule"),
    [
        (LOOKED_UP, None, "parse"),
        (LOOKED_UP, Action("refund_everything", {}), "unknown_tool"),
        (
            LOOKED_UP[:1],
            Action("cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"}),
            "authenticate",
        ),
        (
            LOOKED_UP,
            Action("cancel_pending_order", {"order_id": "#W7", "reason": "ordered by mistake"}),
            "grounded",
        ),
        (
            LOOKED_UP,
            Action("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"}),
            "reason",
        ),
        (LOOKED_UP, Action("transfer_to_human_agents", {"summary": "x"}), "transfer"),
    ],
)
def test_each_rule_revises_with_its_name(messages, action, rule):
    v, feedback = verdict(messages, action)
    assert v == "revise" and feedback.startswith(f"[{rule}]")


def test_what_it_approves():
    ok = [
        Action("cancel_pending_order", {"order_id": "#W1", "reason": "ordered by mistake"}),
        Action("get_product_details", {"product_id": "999"}),  # reads never change the database
        Action("calculate", {"expression": "2 + 2"}),  # τ-bench's calculate is a known read
        Action.reply("Shall I cancel #W1?"),
    ]
    for action in ok:
        assert verdict(LOOKED_UP, action)[0] == "approve", action
    asked = [*LOOKED_UP, Message("user", "Please get me a human.")]
    assert verdict(asked, Action("transfer_to_human_agents", {"summary": "x"}))[0] == "approve"
    # airline needs no user lookup before a write
    assert (
        verdict(LOOKED_UP[:1], Action("cancel_reservation", {"reservation_id": "ann_lee_1"}), "airline")[0]
        == "revise"
    )
    with pytest.raises(ValueError, match="domain must be one of"):
        TauRuleCritic("banking")


def test_no_false_alarm_on_gold_replays():
    from test_tau_bench_real import REASON

    if REASON is not None:
        pytest.skip(REASON)
    from lightning_asym.envs.tau_bench import TauBenchEnv
    from lightning_asym.envs.tau_bench.gold import gold_actor
    from lightning_asym.rollout.engine import RolloutEngine

    for domain, indices in [("retail", [0, 2, 10, 70]), ("airline", [0, 2])]:
        env = TauBenchEnv(env_name=domain, user="scripted")
        tasks = [env.tasks("test")[i] for i in indices]
        for traj in RolloutEngine(env).collect(tasks, gold_actor(), TauRuleCritic(domain)):
            revised = [p.review.feedback for t in traj.turns for p in t.proposals if not p.review.approved]
            assert traj.success, traj.task_id  # revising a gold action only repeats it
            if domain == "retail":
                assert revised == [], (traj.task_id, revised)
            else:  # airline's gold lists skip the reads that would show the ids, so `grounded` flags them
                assert all(f.startswith("[grounded]") for f in revised), (traj.task_id, revised)
