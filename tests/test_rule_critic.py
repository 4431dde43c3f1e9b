"""RetailRuleCritic: each policy rule on hand-made conversations, then agreement with the env's labels."""

from __future__ import annotations

import pytest

from lightning_asym.envs.retail import POLICY, RetailEnv, generate_db, run_tool
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.envs.retail.policy import NO_NEEDLESS_TRANSFER, RULES
from lightning_asym.review import RetailRuleCritic, Reviewer, ReviewRequest
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import REVISION_PREFIX, Action, Message, Task


@pytest.fixture(scope="module")
def env():
    return RetailEnv()


@pytest.fixture(scope="module")
def task(env):
    return env.tasks("test")[0]


class Chat:
    """A hand-made retail conversation; tool results come from running the tools on its own database."""

    def __init__(self, task: Task):
        self.task = task
        self.db = generate_db(task.data["db_seed"])
        self.messages = [Message("system", content=POLICY), Message("user", content="Hi, I need help.")]
        users = [u for u in self.db["users"].values() if len(u["payment_methods"]) >= 2]
        self.user = next(u for u in users if {"pending", "delivered"} <= set(self._statuses(u)))
        self.other = next(u for u in self.db["users"].values() if u["user_id"] != self.user["user_id"])

    def _statuses(self, user):
        return [self.db["orders"][o]["status"] for o in user["orders"]]

    def order(self, status: str, user=None) -> dict:
        user = user or self.user
        return next(self.db["orders"][o] for o in user["orders"] if self.db["orders"][o]["status"] == status)

    def call(self, name: str, **kwargs) -> str:
        obs, _ = run_tool(self.db, name, kwargs)
        n = len(self.messages)
        self.messages += [
            Action(name, kwargs).to_message(f"call_{n}"),
            Message("tool", content=obs, name=name),
        ]
        return obs

    def say(self, agent: str, user: str | None = None) -> None:
        self.messages.append(Message("assistant", content=agent))
        if user is not None:
            self.messages.append(Message("user", content=user))

    def auth(self) -> Chat:
        self.call("find_user_id_by_email", email=self.user["email"])
        self.call("get_user_details", user_id=self.user["user_id"])
        return self

    def confirm_cancel(self, order: dict, answer: str = "Yes, please go ahead.") -> Chat:
        self.call("get_order_details", order_id=order["order_id"])
        self.say(
            f"I will cancel order {order['order_id']} (reason: no longer needed). Please confirm (yes/no).",
            answer,
        )
        return self


def verdict(chat: Chat, action: Action | None, parse_error: str | None = None) -> tuple[str, str]:
    request = ReviewRequest(chat.messages, "", action, parse_error, chat.task)
    (review,) = RetailRuleCritic().review([request])
    return review.verdict, review.feedback


def cancel(order: dict, reason: str = "no longer needed") -> Action:
    return Action("cancel_pending_order", {"order_id": order["order_id"], "reason": reason})


def test_is_a_reviewer_and_batches(task):
    chat = Chat(task)
    critic = RetailRuleCritic()
    assert isinstance(critic, Reviewer)
    requests = [
        ReviewRequest(chat.messages, "", Action("list_all_product_types"), None, task),
        ReviewRequest(chat.messages, "", cancel(chat.order("pending")), None, task),
    ]
    assert [r.verdict for r in critic.review(requests)] == ["approve", "revise"]
    chat.auth()  # from here on the store is read, which needs a retail task
    with pytest.raises(ValueError, match="db_seed.*RetailEnv"):
        critic.review([ReviewRequest(chat.messages, "", cancel(chat.order("pending")), None, Task("t"))])


def test_unparseable_and_unknown_tool(task):
    v, fb = verdict(Chat(task), None, "tool call is not valid JSON")
    assert (
        v == "revise" and fb.startswith("tool-call format") and "<tool_call>" in fb and "not valid JSON" in fb
    )
    v, fb = verdict(Chat(task), Action("refund_everything", {}))
    assert v == "revise" and fb.startswith("known tools") and "refund_everything" in fb


def test_authentication_before_writes_and_private_reads(task):
    chat = Chat(task)
    pending = chat.order("pending")
    for action in (cancel(pending), Action("get_order_details", {"order_id": pending["order_id"]})):
        v, fb = verdict(chat, action)
        assert v == "revise" and fb.startswith("authenticate first") and "find_user_id_by_email" in fb
    chat.call("find_user_id_by_email", email="nobody@example.com")  # an error result is no authentication
    assert verdict(chat, Action("get_user_details", {"user_id": chat.user["user_id"]}))[0] == "revise"
    chat.call("find_user_id_by_email", email=chat.user["email"])
    assert verdict(chat, Action("get_order_details", {"order_id": pending["order_id"]}))[0] == "approve"
    # reads that are not private and transfers need no authentication and are never judged
    assert verdict(Chat(task), Action("list_all_product_types"))[0] == "approve"
    assert verdict(Chat(task), Action("transfer_to_human_agents", {"summary": "help"}))[0] == "approve"


def test_explicit_confirmation(task):
    chat = Chat(task).auth()
    pending = chat.order("pending")
    assert verdict(chat, cancel(pending))[0] == "revise"  # nothing described, no yes
    chat.confirm_cancel(pending, answer="No, wait.")
    v, fb = verdict(chat, cancel(pending))
    assert v == "revise" and fb.startswith("explicit confirmation") and "yes" in fb
    # a critic's feedback is no user reply, even when it says yes
    chat.say(cancel(pending).name)
    chat.messages.append(Message("user", content=f"{REVISION_PREFIX} yes, the user agreed"))
    assert verdict(chat, cancel(pending))[0] == "revise"

    chat = Chat(task).auth().confirm_cancel(pending)
    assert verdict(chat, cancel(pending)) == ("approve", "")
    # the yes stays the user's latest reply across a critic round-trip and a parse-error observation
    chat.say("<tool_call>{oops</tool_call>", "Error: tool call is not valid JSON. To call a tool ...")
    chat.say("I'll go ahead now.")
    chat.messages.append(Message("user", content=f"{REVISION_PREFIX} do not talk, make the call"))
    assert verdict(chat, cancel(pending))[0] == "approve"
    # the yes must answer a description that names what the call does
    v, fb = verdict(chat, cancel(pending, reason="ordered by mistake"))
    assert v == "revise" and fb.startswith("explicit confirmation") and "ordered by mistake" in fb
    delivered = chat.order("delivered")
    ret = {"order_id": delivered["order_id"], "item_ids": [delivered["items"][0]["item_id"]]}
    ret["payment_method_id"] = delivered["payment_history"][0]["payment_method_id"]
    v, fb = verdict(chat, Action("return_delivered_order_items", ret))
    assert v == "revise" and f"does not name order {delivered['order_id']}" in fb
    # one yes covers one write: after the cancel succeeded, the next write needs a new yes
    chat.call("cancel_pending_order", order_id=pending["order_id"], reason="no longer needed")
    pm = next(
        p for p in chat.user["payment_methods"] if p != pending["payment_history"][0]["payment_method_id"]
    )
    args = {"order_id": pending["order_id"], "payment_method_id": pm}
    assert verdict(chat, Action("modify_pending_order_payment", args))[1].startswith("explicit confirmation")


def test_ids_belong_to_this_user(task):
    chat = Chat(task).auth()
    mine, theirs = chat.order("pending"), chat.other["orders"][0]
    v, fb = verdict(chat, Action("get_order_details", {"order_id": theirs}))
    assert v == "revise" and fb.startswith("own data only") and theirs in fb
    assert verdict(chat, Action("get_user_details", {"user_id": chat.other["user_id"]}))[0] == "revise"
    chat.confirm_cancel(mine)
    assert "another user" in verdict(chat, cancel({"order_id": theirs}))[1]
    assert "does not exist" in verdict(chat, cancel({"order_id": "#W0000000"}))[1]
    pm_other = next(iter(chat.other["payment_methods"]))
    item = mine["items"][0]
    args = {"order_id": mine["order_id"], "item_ids": [item["item_id"]], "payment_method_id": pm_other}
    fb = verdict(chat, Action("modify_pending_order_items", {**args, "new_item_ids": ["1"]}))[1]
    assert fb.startswith("own data only") and pm_other in fb
    args["payment_method_id"] = next(iter(chat.user["payment_methods"]))
    wrong_item = {**args, "item_ids": ["0000000000"], "new_item_ids": ["1"]}
    fb = verdict(chat, Action("modify_pending_order_items", wrong_item))[1]
    assert "item 0000000000 is not in order" in fb
    foreign = next(v for p, v in chat.db["products"].items() if p != item["product_id"])["variants"]
    fb = verdict(chat, Action("modify_pending_order_items", {**args, "new_item_ids": [next(iter(foreign))]}))[
        1
    ]
    assert "is not a variant of" in fb


def test_order_state_from_a_dry_run_on_the_replayed_store(task):
    chat = Chat(task).auth()
    delivered = chat.order("delivered")
    chat.confirm_cancel(delivered)
    v, fb = verdict(chat, cancel(delivered))
    assert v == "revise" and fb.startswith("order state") and "non-pending" in fb
    # the conversation's successful writes are replayed: a cancelled order cannot be cancelled again
    chat = Chat(task).auth()
    pending = chat.order("pending")
    chat.confirm_cancel(pending)
    assert verdict(chat, cancel(pending))[0] == "approve"
    chat.call("cancel_pending_order", order_id=pending["order_id"], reason="no longer needed")
    chat.confirm_cancel(pending)
    v, fb = verdict(chat, cancel(pending))
    assert v == "revise" and "status cancelled" in fb


def test_replies_state_only_supported_amounts_and_real_changes(task):
    chat = Chat(task).auth()
    order = chat.order("pending")
    chat.call("get_order_details", order_id=order["order_id"])
    prices = [i["price"] for i in order["items"]]
    total = sum(prices)
    assert verdict(chat, Action.reply(f"Your items cost ${total:,.2f} in total."))[0] == "approve"
    assert verdict(chat, Action.reply(f"The first one costs ${prices[0]:.2f}."))[0] == "approve"
    v, fb = verdict(chat, Action.reply(f"You will get ${total + 13.37:.2f} back."))
    assert v == "revise" and fb.startswith("no made-up facts") and f"{total + 13.37:.2f}" in fb
    # an amount the user gave is not made up by the agent
    chat.say("How much did you pay?", "I paid $999.99 I think.")
    assert verdict(chat, Action.reply("You said $999.99."))[0] == "approve"
    # claiming a change that no write made
    claim = Action.reply(f"Order {order['order_id']} has been cancelled. Anything else?")
    v, fb = verdict(chat, claim)
    assert v == "revise" and fb.startswith("no made-up facts") and order["order_id"] in fb
    assert (
        verdict(chat, Action.reply(f"I can cancel order {order['order_id']}; confirm (yes/no)?"))[0]
        == "approve"
    )
    chat.call("cancel_pending_order", order_id=order["order_id"], reason="no longer needed")
    assert verdict(chat, claim)[0] == "approve"
    product = next(p for p in chat.db["products"].values() if p["name"] == order["items"][0]["name"])
    n = sum(v["available"] for v in product["variants"].values())
    chat.call("get_product_details", product_id=product["product_id"])
    assert verdict(chat, Action.reply(f"The {product['name']} has {n} available variants."))[0] == "approve"
    v, fb = verdict(chat, Action.reply(f"Right now the {product['name']} has {n + 2} available variants."))
    assert v == "revise" and f"{n} available variants" in fb
    moved = Action.reply("Your default address is now 12 Oak Street, Austin, TX 78701, USA.")
    assert "modify_user_address did not succeed" in verdict(chat, moved)[1]
    chat.call("modify_user_address", user_id=chat.user["user_id"], address1="12 Oak Street", address2="",
              city="Austin", state="TX", country="USA", zip="78701")  # fmt: skip
    assert verdict(chat, moved)[0] == "approve"


# ----------------------------------------------------------------------------- agreement with the env


def _proposals(trajs):
    return [p for t in trajs for turn in t.turns for p in turn.proposals]


def test_no_false_alarms_on_the_error_free_oracle(env):
    trajs = RolloutEngine(env).collect(
        env.tasks("test"), NoisyOracleBackend(error_rate=0.0), RetailRuleCritic()
    )
    props = _proposals(trajs)
    assert len(props) > 1000 and all(t.success for t in trajs)
    flagged = [(p.text, p.review.feedback) for p in props if not p.review.approved]
    assert flagged == []


def test_flags_most_env_violations_and_lifts_success(env):
    tasks = env.tasks("test")
    engine = RolloutEngine(env)
    trajs = engine.collect(tasks, NoisyOracleBackend(error_rate=0.3), RetailRuleCritic())
    labelled = [p for p in _proposals(trajs) if p.label and p.label["violation"]]
    caught = [not p.review.approved for p in labelled]
    # transfers are approved by design (whether one was needed is not a rule), so give-ups are missed
    judged = [c for p, c in zip(labelled, caught) if p.label["rule"] != NO_NEEDLESS_TRANSFER]
    assert len(labelled) > 100 and len(judged) > 50
    assert sum(judged) / len(judged) > 0.95  # measured 1.0
    assert sum(caught) / len(caught) > 0.4  # measured 0.55 (the rest are give-up transfers)
    # one vocabulary (envs/retail/policy.py): where both flag a proposal they name the same rule
    named = [(p.label["rule"], p.review.feedback.split(":")[0]) for p, c in zip(labelled, caught) if c]
    assert len(named) > 50 and all(env_rule == rule for env_rule, rule in named)  # measured 92 of 92
    flagged = {p.review.feedback.split(":")[0] for p in _proposals(trajs) if not p.review.approved}
    assert flagged <= set(RULES)
    # flags on proposals the env does not call deviations: claims of changes never made, wrong counts
    extra = [
        p
        for p in _proposals(trajs)
        if not p.review.approved and not (p.label["deviation"] or p.label["violation"])
    ]
    assert extra and all(p.action.is_reply for p in extra)
    assert all("was changed" in p.review.feedback or "available variants" in p.review.feedback for p in extra)
    alone = engine.collect(tasks, NoisyOracleBackend(error_rate=0.3))
    rate = sum(t.success for t in trajs) / len(trajs)
    assert rate > sum(t.success for t in alone) / len(alone) + 0.1  # measured 0.30 vs 0.06
