"""RetailEnv: tau-bench reward, deviation/violation labels, episode ends, robustness."""

from __future__ import annotations

import pytest

from lightning_asym.envs import make_env, registered_envs
from lightning_asym.envs.retail import RetailEnv, ScriptedRetailUser
from lightning_asym.envs.retail.env import said
from lightning_asym.envs.retail.policy import (
    AUTHENTICATE_FIRST,
    EXPLICIT_CONFIRMATION,
    NO_MADE_UP_FACTS,
    NO_NEEDLESS_TRANSFER,
    OWN_DATA_ONLY,
)
from lightning_asym.envs.retail.tools import WRITE_TOOLS
from lightning_asym.types import Action

CLEAN = {"deviation": False, "rule": None, "violation": None}
YES = "Please confirm (yes/no)."


@pytest.fixture(scope="module")
def env():
    return RetailEnv()


def _task(env, pred):
    return next(t for t in env.tasks("test") if pred(t))


def _auth(e, task):
    """Authenticate the way the policy asks (a find_user call) and get a 'yes' ready."""
    r = e.step(Action("find_user_id_by_email", {"email": task.data["email"]}))
    assert r.messages[0].content == task.data["user_id"]


def _replay(env, task, actions, say_outputs=True):
    """Step `actions` (a transfer last), with one reply of the outputs before the episode ends."""
    transfer = [a for a in actions if a.name == "transfer_to_human_agents"]
    actions = [a for a in actions if a.name != "transfer_to_human_agents"]
    e = env.fork()
    e.max_turns = len(actions) + 1 + len(transfer)  # the turn budget ends the episode after the last step
    e.reset(task)
    for a in actions:
        r = e.step(a)
        assert not r.done and "error" not in r.info, r.messages[0].content
    r = e.step(Action.reply(" and ".join(task.required_outputs) if say_outputs else "Bye."))
    if transfer:
        assert not r.done
        r = e.step(transfer[0])
    assert r.done
    return r


def test_registered_and_schemas(env):
    assert "retail" in registered_envs() and isinstance(make_env("retail", num_train=2), RetailEnv)
    names = {s["function"]["name"] for s in env.tool_schemas}
    assert "respond" not in names and "transfer_to_human_agents" in names and len(names) == 16
    msgs = env.fork().reset(env.tasks("test")[0])
    assert [m.role for m in msgs] == ["system", "user"] and "Authenticate first" in msgs[0].content
    with pytest.raises(ValueError):
        RetailEnv(user="llm")
    with pytest.raises(ValueError):
        env.tasks("dev")


def test_gold_replay_succeeds(env):
    for task in env.tasks("test")[:30]:
        r = _replay(env, task, task.gold_actions)
        assert r.reward == 1.0 and r.info["success"] and r.info["db_match"], task.id


def test_single_deviation_fails(env):
    task = _task(env, lambda t: len(t.gold_actions) >= 2 and t.gold_actions[0].name in WRITE_TOOLS)
    gold = task.gold_actions
    # one gold write left out
    assert _replay(env, task, gold[1:]).reward == 0.0
    # one extra write
    extra = Action(
        "modify_user_address",
        {
            "user_id": task.data["user_id"],
            "address1": "9 X St",
            "address2": "",
            "city": "Austin",
            "state": "TX",
            "country": "USA",
            "zip": "78701",
        },
    )
    r = _replay(env, task, [*gold, extra])
    assert r.reward == 0.0 and not r.info["db_match"]
    # one argument changed
    cancel = _task(env, lambda t: any(a.name == "cancel_pending_order" for a in t.gold_actions))
    wrong = [
        Action(
            a.name,
            {
                **a.kwargs,
                "reason": "ordered by mistake"
                if a.kwargs["reason"] == "no longer needed"
                else "no longer needed",
            },
        )
        if a.name == "cancel_pending_order"
        else a
        for a in cancel.gold_actions
    ]
    assert _replay(env, cancel, wrong).reward == 0.0


def test_required_outputs(env):
    assert said(["The refund is $1,234.50."], "1234.50")
    assert said(["nothing", "TOTAL: ABC"], "abc")
    assert not said(["The refund is $1234.5."], "1234.50")
    task = _task(env, lambda t: t.required_outputs)
    r = _replay(env, task, task.gold_actions, say_outputs=False)
    assert r.reward == 0.0 and r.info["db_match"] and not r.info["outputs_said"]


def test_deviation_and_violation_labels(env):
    task = _task(
        env, lambda t: t.gold_actions[0].name == "cancel_pending_order" and t.data["auth"] == "email"
    )
    gold = task.gold_actions[0]
    e = env.fork()
    e.reset(task)
    # a gold write before authentication: on plan, but against policy
    info = e.check_action(gold)
    assert info == {"deviation": False, "rule": AUTHENTICATE_FIRST, "violation": info["violation"]}
    assert "authenticat" in info["violation"]
    r = e.step(Action("get_order_details", {"order_id": gold.kwargs["order_id"]}))
    assert r.info["deviation"] is False and r.info["rule"] == AUTHENTICATE_FIRST
    _auth(e, task)
    r = e.step(Action("get_order_details", {"order_id": gold.kwargs["order_id"]}))
    assert r.info == CLEAN
    # authenticated, but no explicit yes yet
    assert (
        e.check_action(gold)["rule"] == EXPLICIT_CONFIRMATION and "yes" in e.check_action(gold)["violation"]
    )
    other_user = next(u for u in e.db["users"] if u != task.data["user_id"])
    other_order = e.db["users"][other_user]["orders"][0]
    nosy = e.check_action(Action("get_order_details", {"order_id": other_order}))
    assert nosy["rule"] == OWN_DATA_ONLY and "another user" in nosy["violation"]
    e.step(
        Action.reply(
            f"I will cancel order {gold.kwargs['order_id']} because it is {gold.kwargs['reason']}. {YES}"
        )
    )
    assert e._confirmed
    wrong = Action(
        gold.name,
        {
            **gold.kwargs,
            "reason": "ordered by mistake"
            if gold.kwargs["reason"] == "no longer needed"
            else "no longer needed",
        },
    )
    assert e.check_action(wrong) == {**CLEAN, "deviation": True}
    assert e.check_action(gold) == CLEAN
    before = e.db
    r = e.step(gold)
    assert r.info == CLEAN and e.db is not before
    # the same write again: refused by the tool and off-plan
    r = e.step(gold)
    assert r.info["deviation"] is True and r.info["error"] and r.messages[0].content.startswith("Error:")
    assert e.check_action(Action("no_such_tool", {}))["deviation"] is True
    refund = task.required_outputs or ["0.00"]
    assert e.check_action(Action.reply(f"Your refund is ${refund[0]}."))["deviation"] is False
    made_up = e.check_action(Action.reply("You will get $98,765.43 back."))
    assert made_up["deviation"] is True and "98765.43" in made_up["violation"]
    assert made_up["rule"] == NO_MADE_UP_FACTS and made_up["unsupported"] == ["98765.43"]
    r = e.step(Action.reply("You will get $98,765.43 back."))
    assert r.info["deviation"] is True and r.messages[0].role == "user"
    assert e.check_action(Action("think", {"thought": "x"})) == CLEAN
    r = e.step(Action("transfer_to_human_agents", {"summary": "x"}))
    assert r.done and r.info["deviation"] and r.info["rule"] == NO_NEEDLESS_TRANSFER
    assert "transferred" in r.info["violation"]
    assert "success" in r.info


def test_transfer_task_and_episode_ends(env):
    task = _task(env, lambda t: t.gold_actions[-1].name == "transfer_to_human_agents")
    e = env.fork()
    e.reset(task)
    assert e.check_action(Action("transfer_to_human_agents", {"summary": "x"})) == CLEAN
    # user STOP ends the episode with a reward computed
    e = env.fork()
    e.reset(task)
    for _ in range(6):
        r = e.step(Action.reply("Hmm."))
        if r.done:
            break
    assert r.done and "###STOP###" not in r.messages[0].content and r.info["success"] is False
    after = e.step(Action.reply("hello?"))
    assert after.done and after.info["error"]


def test_step_never_raises_on_garbage(env):
    e = env.fork()
    e.reset(env.tasks("test")[1])
    garbage = [
        Action("", {}),
        Action("respond", {}),
        Action("respond", {"content": None}),
        Action("x" * 10_000, {"a": 1}),
        Action("get_order_details", {"order_id": {"$ne": 1}}),
        Action("cancel_pending_order", {"order_id": None}),
        Action(
            "return_delivered_order_items", {"order_id": "#W1", "item_ids": [[1]], "payment_method_id": 3}
        ),
        Action("get_user_details", []),
        Action(None, {}),
        None,
        "respond",
        42,  # type: ignore[arg-type]
        Action("modify_user_address", {"user_id": "x", "address1": 1.5}),
    ]
    for a in garbage:
        r = e.step(a)
        assert isinstance(r.messages, list) and "deviation" in r.info


def test_user_simulator_instance_and_close(env):
    class Recording(ScriptedRetailUser):
        closed = 0

        def close(self):
            Recording.closed += 1

    e = RetailEnv(num_test=3, user=Recording(), max_turns=2)
    task = e.tasks("test")[0]
    f = e.fork()
    f.reset(task)
    f.step(Action.reply("Hello"))
    r = f.step(Action.reply("Hello"))
    assert r.done and Recording.closed == 1
    f.close()
    assert Recording.closed == 1


def test_llm_user_plays_the_customer():
    from lightning_asym.backends.scripted import ScriptedBackend
    from lightning_asym.envs.users import LLMUser

    backend = ScriptedBackend(
        responses=["Hi, I want to cancel an order.", "My email is a@b.c", "Bye ###STOP###"]
    )
    env = RetailEnv(num_test=2, user=LLMUser(backend))
    e = env.fork()
    msgs = e.reset(env.tasks("test")[0])
    assert msgs[1].content == "Hi, I want to cancel an order."
    assert e.step(Action.reply("What is your email?")).messages[0].content == "My email is a@b.c"
    r = e.step(Action.reply("Thanks."))
    assert r.done and r.messages[0].content == "Bye" and r.info["success"] is False
