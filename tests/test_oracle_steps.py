"""The noisy oracle on an env's agent plan (`envs/agent_plan.py`), with no env package at all.

The seam: an env puts `data["agent_plan"]` (steps tagged auth/read/write/transfer, and real
wrong values for each write) in its tasks; the oracle needs nothing else. τ-bench's own tasks
are in `test_tau_bench_oracle.py`.
"""

from __future__ import annotations

import pytest

from lightning_asym.envs.agent_plan import plan_step, plan_steps
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.envs.retail.oracle_steps import CONFIRM_MARK
from lightning_asym.types import Action, Message, Task

AUTH = Action("find_user_id_by_email", {"email": "ann@example.com"})
READ = Action("get_order_details", {"order_id": "#W1"})
CANCEL = Action("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"})
TASK = Task(
    id="plan-0",
    split="test",
    instruction="Cancel order #W1, I no longer need it. How much do I get back?",
    gold_actions=[AUTH, READ, CANCEL],
    required_outputs=["12.50"],
    data={
        "agent_plan": {
            "steps": [
                plan_step("auth", AUTH),
                plan_step("read", READ),
                plan_step("write", CANCEL, {"order_id": ["#W2"], "reason": ["ordered by mistake"], "x": []}),
            ]
        }
    },
)


def play(oracle: NoisyOracleBackend, max_turns: int = 10) -> list[Action]:
    """A stand-in env and user: every call returns "ok", the user says yes to a confirmation, a "Done." ends."""
    msgs = [Message("system", content="policy"), Message("user", content=TASK.instruction)]
    oracle.start("k", TASK)
    out = []
    for turn in range(max_turns):
        (c,) = oracle.complete([msgs], keys=["k"], seeds=[turn])
        out.append(c.action)
        msgs.append(c.action.to_message(f"call_{turn}", text=c.text))
        if not c.action.is_reply:
            msgs.append(Message("tool", content="ok", name=c.action.name))
        elif CONFIRM_MARK in c.action.content:
            msgs.append(Message("user", content="Yes, please go ahead."))
        else:
            break
    return out


def test_clean_plan_authenticates_reads_confirms_writes_and_reports():
    acts = play(NoisyOracleBackend(error_rate=0.0))
    assert [a.name for a in acts] == [AUTH.name, READ.name, "respond", CANCEL.name, "respond"]
    assert acts[3] == CANCEL and acts[4].content == "Done. 12.50"


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("unauthenticated_write", [READ, "confirm", CANCEL, "Done. 12.50"]),
        ("give_up", [AUTH, "transfer_to_human_agents"]),  # at the first step of the work
        ("premature_end", [AUTH, READ, "Done. 12.50"]),
        ("skipped_confirmation", [AUTH, READ, CANCEL, "Done. 12.50"]),
        ("wrong_order", [AUTH, READ, "confirm", Action(CANCEL.name, {**CANCEL.kwargs, "order_id": "#W2"})]),
        (
            "wrong_argument",
            [AUTH, READ, "confirm", Action(CANCEL.name, {**CANCEL.kwargs, "reason": "ordered by mistake"})],
        ),
    ],
)
def test_each_mode_uses_the_envs_wrong_values(mode, expected):
    acts = play(NoisyOracleBackend(error_rate=0.0, **{mode: 1.0}))
    for want, got in zip(expected, acts):
        if want == "confirm":
            assert CONFIRM_MARK in got.content
        elif isinstance(want, str) and want.startswith("Done"):
            assert got.content == want
        elif isinstance(want, str):
            assert got.name == want
        else:
            assert got == want


def test_hallucinated_output_and_a_bad_plan():
    acts = play(NoisyOracleBackend(error_rate=0.0, hallucinated_output=1.0))
    assert acts[-1].content.startswith("Done.") and "12.50" not in acts[-1].content
    assert plan_steps({}) is None
    with pytest.raises(ValueError, match="agent_plan"):
        plan_steps({"agent_plan": ["not", "a", "dict"]})
    with pytest.raises(ValueError, match="kind"):
        plan_step("delete", CANCEL)
