"""The noisy oracle on τ-bench's own retail tasks: the env's agent plan and its failure modes.

`TauBenchEnv` offers each task's plan (`data["agent_plan"]`: the completed gold calls tagged
auth/read/write/transfer, and real wrong values for each write from τ-bench's database); the
oracle plays it with our retail's failure modes. Skipped like `test_tau_bench_real` when
τ-bench cannot be found.
"""

from __future__ import annotations

import pytest
from test_tau_bench_real import REASON

from lightning_asym.envs.agent_plan import plan_steps
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.envs.retail.oracle_steps import CONFIRM_MARK
from lightning_asym.envs.retail.policy import AUTHENTICATE_FIRST, NO_NEEDLESS_TRANSFER
from lightning_asym.envs.tau_bench import TauBenchEnv
from lightning_asym.review.tau_rules import TauRuleCritic
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.rollout.supervision import SupervisionConfig

pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")
WRITES = ("exchange_delivered_order_items", "return_delivered_order_items")


@pytest.fixture(scope="module")
def env():
    return TauBenchEnv(env_name="retail", user="scripted")


@pytest.fixture(scope="module")
def db(env):
    return env._proto("test").data  # τ-bench's database as loaded (read only here)


def run(env, tasks, reviewer=None, fix_prob=0.8, **rates):
    oracle = NoisyOracleBackend(**{"error_rate": 0.0, **rates}, fix_prob=fix_prob)
    engine = RolloutEngine(env, supervision=SupervisionConfig(max_revisions=2))
    return oracle, engine.collect(tasks, oracle, reviewer)


def writes_of(traj):
    return [t.action for t in traj.turns if t.action is not None and t.action.name in WRITES]


def test_clean_oracle_confirms_each_write_and_scores_one(env):
    tasks = env.tasks("test")[:10]
    oracle, trajs = run(env, tasks)
    assert all(t.success and t.reward == 1.0 for t in trajs)
    for traj in trajs:
        assert not any(t.info.get("deviation") or t.info.get("violation") for t in traj.turns), traj.task_id
        for i, turn in enumerate(traj.turns):
            if turn.action is not None and turn.action.name in WRITES:  # asked, and the user said yes
                ask = traj.turns[i - 1]
                assert CONFIRM_MARK in ask.action.content and "Yes" in ask.observation[0].content
    assert sum(oracle.opportunities.values()) > 0 and not oracle.injected


def test_wrong_values_are_real_values_of_the_same_user(env, db):
    task = env.tasks("test")[0]
    (write,) = [s for s in plan_steps(task.data) if s["kind"] == "write"]
    alts, kw = write["alternatives"], write["action"]["kwargs"]
    user = db["users"][task.data["user_id"]]
    assert alts["order_id"] and set(alts["order_id"]) <= set(user["orders"]) - {kw["order_id"]}
    assert set(alts.get("payment_method_id", [])) == set(user["payment_methods"]) - {kw["payment_method_id"]}
    order_items = {i["item_id"]: i["product_id"] for i in db["orders"][kw["order_id"]]["items"]}
    for pos, old in enumerate(kw["item_ids"]):
        assert set(alts["item_ids"][pos]) == set(order_items) - set(kw["item_ids"])
        variants = db["products"][order_items[old]]["variants"]
        assert alts["new_item_ids"][pos] and set(alts["new_item_ids"][pos]) <= set(variants)
        assert kw["new_item_ids"][pos] not in alts["new_item_ids"][pos]
    kinds = [s["kind"] for s in plan_steps(task.data)]
    assert kinds[0] == "auth" and kinds[-1] == "write" and set(kinds[1:-1]) == {"read"}


@pytest.mark.parametrize(
    "mode, succeeds, rule",
    [
        (
            "unauthenticated_write",
            True,
            AUTHENTICATE_FIRST,
        ),  # τ-bench's reward ignores it; check_action does not
        ("give_up", False, NO_NEEDLESS_TRANSFER),
        ("premature_end", False, None),
        ("skipped_confirmation", True, None),  # nor does either see a missing confirmation
        ("wrong_order", False, "off_plan"),  # no rule broken: the judgement says how it is off the plan
        ("wrong_argument", False, "off_plan"),
    ],
)
def test_each_failure_mode(env, db, mode, succeeds, rule):
    tasks = env.tasks("test")[:3]  # each has one write on an order of a user with other orders
    oracle, trajs = run(env, tasks, **{mode: 1.0})
    assert set(oracle.injected) == {mode} and oracle.injected[mode] >= 3
    assert [t.success for t in trajs] == [succeeds] * 3
    if rule == "off_plan":
        assert all(
            any(t.info.get("off_plan") and t.info["rule"] is None for t in traj.turns) for traj in trajs
        )
    elif rule is not None:
        assert all(any(t.info.get("rule") == rule for t in traj.turns) for traj in trajs)
    for task, traj in zip(tasks, trajs):
        gold = [a for a in task.gold_actions if a.name in WRITES][0]
        user = db["users"][task.data["user_id"]]
        if mode == "skipped_confirmation":
            assert writes_of(traj) == [gold] and not any(CONFIRM_MARK in (t.text or "") for t in traj.turns)
        if mode == "wrong_order":
            (w,) = writes_of(traj)
            assert w.kwargs["order_id"] in set(user["orders"]) - {gold.kwargs["order_id"]}
        if mode == "wrong_argument":
            (w,) = writes_of(traj)
            bad = [k for k in gold.kwargs if w.kwargs[k] != gold.kwargs[k]]
            assert len(bad) == 1 and bad[0] != "order_id"
            if bad[0] == "payment_method_id":
                assert w.kwargs[bad[0]] in user["payment_methods"]


def test_hallucinated_output_misstates_the_amounts(env):
    tasks = [t for t in env.tasks("test")[:12] if t.required_outputs][:2]
    oracle, trajs = run(env, tasks, hallucinated_output=1.0)
    assert oracle.injected["hallucinated_output"] == 2 and not any(t.success for t in trajs)
    for task, traj in zip(tasks, trajs):
        last = traj.turns[-1].action.content
        assert last.startswith("Done.") and not any(o in last for o in task.required_outputs)


def test_tau_rule_critic_sends_the_oracle_back_to_authenticate(env):
    tasks = env.tasks("test")[:3]
    oracle, trajs = run(env, tasks, TauRuleCritic("retail"), fix_prob=1.0, unauthenticated_write=1.0)
    assert all(t.success for t in trajs)
    for traj in trajs:  # the write went out only after a lookup of the user
        sent = [t.action.name for t in traj.turns if t.action is not None and not t.action.is_reply]
        assert sent.index("find_user_id_by_name_zip") < sent.index(writes_of(traj)[0].name)
        assert not any(t.info.get("violation") for t in traj.turns)


def test_an_address_copied_from_another_order_is_read_first(env):
    """Task 78: "change address to same as #W8277957"; the plan reads that order before the write."""
    task = env.tasks("test")[78]
    names = [(a.name, a.kwargs.get("order_id")) for a in task.gold_actions]
    write = names.index(("modify_pending_order_address", "#W5056519"))
    assert ("get_order_details", "#W8277957") in names[:write]
    oracle, (traj,) = run(env, [task], TauRuleCritic("retail"))
    assert traj.success and not any(
        p.review and p.review.verdict == "revise" for t in traj.turns for p in t.proposals
    )
