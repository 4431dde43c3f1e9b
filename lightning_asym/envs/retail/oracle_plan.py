"""What a competent retail agent does next, read from the conversation so far.

The plan is stateless: it rebuilds where the episode stands from the messages (which calls
ran and what they returned, what the user said; read by `conversation.read_conversation`),
so it stays right whatever the rollout engine did in between (critic revisions, fallbacks,
blocked replies). It needs a retail task's `data["intents"]` (see
`lightning_asym.envs.retail.intents`), read as plain dicts.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.envs.retail.conversation import Event, read_conversation
from lightning_asym.envs.retail.policy import says_yes
from lightning_asym.envs.retail.tools import TRANSFER
from lightning_asym.types import Action, Message, Task

AUTH_ASK = (
    "I'd be happy to help. First I need to verify your identity: could you please give me your email "
    "address, or your first name, last name and zip code?"
)
DETAILS_ASK = "Thank you, {first}, your account is verified. What exactly can I do for you today?"
CONFIRM = "Before I proceed, here is what I will do: {describe}. Please confirm (yes/no)."
CONFIRM_MARK = "(yes/no)"
ANYTHING_ELSE = "Is there anything else I can help you with?"
GIVE_UP_SUMMARY = "The user needs help with their orders that I could not complete."
_WORK_CALLS = ("get_order_details", "get_product_details", "list_all_product_types")


@dataclass
class Step:
    """The clean next action, with what kind of step it is (where failure modes can strike)."""

    action: Action
    tag: str  # auth | find | user | details | lookup | confirm | write | report | transfer | end
    intent: dict[str, Any] | None = None
    first_of_intent: bool = False
    context: dict[str, Any] = field(default_factory=dict)


def events_of(conv: Sequence[Message]) -> list[Event]:
    """Assistant replies, tool calls with their results, and user messages, in order."""
    return read_conversation(conv).events


def _find(events: list[Event], start: int, pred) -> int | None:
    return next((i for i in range(start, len(events)) if pred(events[i])), None)


def _reply_after(events: list[Event], i: int) -> Event | None:
    return events[i + 1] if i + 1 < len(events) and events[i + 1].kind == "user" else None


def _is_work(e: Event) -> bool:
    if e.kind == "call":
        return e.action.name in _WORK_CALLS or e.action.name not in (
            "find_user_id_by_email",
            "find_user_id_by_name_zip",
            "get_user_details",
            "think",
            "calculate",
            TRANSFER,
        )
    return e.kind == "say" and CONFIRM_MARK in e.text


def report_text(intent: dict[str, Any]) -> str:
    return f"{intent['report']} {ANYTHING_ELSE}"


def _act(d: dict[str, Any]) -> Action:
    return Action(d["name"], json.loads(json.dumps(d["kwargs"])))


def next_step(conv: Sequence[Message], task: Task, skip_auth: bool = False, force_auth: bool = False) -> Step:
    """The clean next step of a competent agent for a retail task.

    `skip_auth` starts the work without authenticating (a failure mode); once work started
    that way the agent goes on with it, unless `force_auth` (after critic feedback) makes it
    authenticate first. Identity the user already gave is always looked up.
    """
    d = task.data
    events = events_of(conv)
    find = _find(events, 0, lambda e: e.kind == "call" and e.ok and e.action.name.startswith("find_user_id"))
    work = _find(events, 0, _is_work)
    early_work = work is not None and (find is None or work < find)
    cursor = 0
    if find is None:
        users = " ".join(e.text.lower() for e in events if e.kind == "user")
        if d["email"].lower() in users:
            return Step(Action("find_user_id_by_email", {"email": d["email"]}), "find")
        if d["zip"] in users:
            args = {"first_name": d["first_name"], "last_name": d["last_name"], "zip": d["zip"]}
            return Step(Action("find_user_id_by_name_zip", args), "find")
        if force_auth or not (skip_auth or early_work):
            return Step(Action.reply(AUTH_ASK), "auth")
    else:
        got = _find(events, find, lambda e: e.kind == "call" and e.ok and e.action.name == "get_user_details")
        if got is None:
            return Step(Action("get_user_details", {"user_id": events[find].text}), "user")
        if not early_work:  # authenticated before any work: ask what the user wants
            ask = _find(events, got, lambda e: e.kind == "say")
            if ask is None:
                return Step(Action.reply(DETAILS_ASK.format(first=d["first_name"])), "details")
            cursor = ask + 1
    for intent in d["intents"]:
        # the report as said, possibly with hallucinated outputs (a failure mode)
        heads = {report_text(intent)[:30], hallucinate(report_text(intent), intent["outputs"])[:30]}
        done = _find(events, cursor, lambda e, h=tuple(heads): e.kind == "say" and e.text.startswith(h))
        if done is not None:
            cursor = done + 1
            continue
        return _intent_step(events, cursor, intent)
    return Step(Action.reply(ANYTHING_ELSE), "end")


def _intent_step(events: list[Event], cursor: int, intent: dict[str, Any]) -> Step:
    """The next step inside one intent, given the events since the previous intent ended."""
    if intent["kind"] == "transfer":
        return Step(_act(intent["action"]), "transfer", intent, first_of_intent=True)
    action = _act(intent["action"]) if intent["action"] else None
    report = Step(Action.reply(report_text(intent)), "report", intent)
    if action is not None and _find(
        events, cursor, lambda e: e.kind == "call" and e.action.name == action.name
    ):
        return report
    if action is not None:
        key = intent["order_id"] or "default address"
        for i in range(len(events) - 1, cursor - 1, -1):
            e = events[i]
            if e.kind == "say" and CONFIRM_MARK in e.text and key.lower() in e.text.lower():
                # the yes must be the user's latest word: anything said since voids it (as the env judges)
                reply = _reply_after(events, i)
                latest = all(e.kind != "user" for e in events[i + 2 :])
                if reply is not None and latest and says_yes(reply.text):
                    return Step(action, "write", intent)
                break
    todo = [_act(lk) for lk in intent["lookups"]]
    for n, lk in enumerate(todo):
        seen = _find(events, cursor, lambda e, a=lk: e.kind == "call" and e.ok and e.action == a)
        if seen is None:
            return Step(lk, "lookup", intent, first_of_intent=n == 0)
    if action is None:  # a question or a refusal: answer it
        return Step(report.action, "report", intent, first_of_intent=not todo)
    confirm = Action.reply(CONFIRM.format(describe=intent["describe"]))
    return Step(confirm, "confirm", intent, first_of_intent=not todo, context={"write": action})


# ---------------------------------------------------------------------------- injected mistakes


def earlier_statement(conv: Sequence[Message], intent: dict[str, Any]) -> str | None:
    """The confirmation already said for `intent` (where its amounts were first stated), if any."""
    key = (intent["order_id"] or "default address").lower()
    for e in events_of(conv):
        if e.kind == "say" and CONFIRM_MARK in e.text and key in e.text.lower():
            return e.text
    return None


def _known(events: list[Event], tool: str) -> list[dict[str, Any]]:
    """Parsed JSON results of successful calls of `tool` seen in the conversation."""
    out = []
    for e in events:
        if e.kind == "call" and e.ok and e.action.name == tool:
            try:
                out.append(json.loads(e.text))
            except json.JSONDecodeError:
                pass
    return out


def _tweak(s: str, rng) -> str:
    """A plausible-looking wrong id: one digit changed."""
    digits = [i for i, c in enumerate(s) if c.isdigit()]
    if not digits:
        return s + "1"
    i = rng.choice(digits)
    return s[:i] + str((int(s[i]) + rng.randint(1, 9)) % 10) + s[i + 1 :]


def wrong_argument(action: Action, conv: Sequence[Message], task: Task, rng) -> Action:
    """The same write with one argument wrong: another item, payment method, reason or zip."""
    events = events_of(conv)
    kw = json.loads(json.dumps(action.kwargs))
    orders = {o["order_id"]: o for o in _known(events, "get_order_details")}
    user = (_known(events, "get_user_details") or [{}])[-1]
    choices = []
    if "reason" in kw:
        choices.append("reason")
    if "item_ids" in kw:
        choices.append("item_ids")
    if "payment_method_id" in kw:
        choices.append("payment_method_id")
    if "zip" in kw:
        choices.append("zip")
    what = rng.choice(choices) if choices else None
    if what == "reason":
        kw["reason"] = "ordered by mistake" if kw["reason"] == "no longer needed" else "no longer needed"
    elif what == "item_ids":
        order = orders.get(kw.get("order_id"), {})
        others = sorted(i["item_id"] for i in order.get("items", []) if i["item_id"] not in kw["item_ids"])
        j = rng.randrange(len(kw["item_ids"]))
        kw["item_ids"][j] = rng.choice(others) if others else _tweak(kw["item_ids"][j], rng)
    elif what == "payment_method_id":
        others = sorted(p for p in user.get("payment_methods", {}) if p != kw["payment_method_id"])
        kw["payment_method_id"] = rng.choice(others) if others else _tweak(kw["payment_method_id"], rng)
    elif what == "zip":
        kw["zip"] = _tweak(kw["zip"], rng)
    else:
        key = next(iter(sorted(kw)), None)
        if key is not None and isinstance(kw[key], str):
            kw[key] = _tweak(kw[key], rng)
    return Action(action.name, kw)


def wrong_order(action: Action, conv: Sequence[Message], task: Task, rng) -> Action:
    """The same write aimed at another order of the user (or a mistyped id)."""
    kw = json.loads(json.dumps(action.kwargs))
    if "order_id" not in kw:
        return wrong_argument(action, conv, task, rng)
    user = (_known(events_of(conv), "get_user_details") or [{}])[-1]
    others = sorted(o for o in user.get("orders", []) if o != kw["order_id"])
    kw["order_id"] = rng.choice(others) if others else _tweak(kw["order_id"], rng)
    return Action(action.name, kw)


def hallucinate(text: str, outputs: list[str]) -> str:
    """`text` with every required output replaced by a wrong value (the same one each time)."""
    for o in outputs:
        rng = random.Random(f"hallucinate:{o}")
        if re.fullmatch(r"\d+", o):
            wrong = str(int(o) + rng.randint(1, 3))
        else:
            wrong = f"{float(o) * rng.uniform(1.1, 1.6) + rng.randint(1, 9):.2f}"
        text = text.replace(o, wrong)
    return text
