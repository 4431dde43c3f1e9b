"""The env's own judgement of a proposed action on a τ-bench task (`TauBenchEnv.check_action`).

τ-bench's reward compares the final database with the one the gold actions produce, so a
proposal deviates when it would change the database in a way the gold plan does not (a write
that is not the next gold write, or any write of a task whose gold writes are done), when it
transfers to a human although the gold plan never does, or when it names a tool that does
not exist. Reads never deviate: they leave the database alone. Two policy rules of τ-bench's
wikis are checked as code: authenticate the user before a write (retail: look the user id up
by email or name and zip; airline: the user id is given, so nothing to check), and transfer
only when the gold plan does. Explicit confirmation before a write is a wiki rule too, but it is
not judged: τ-bench's reward ignores it, and its gold action lists hold no replies to check it
against, so a gold replay would be labelled wrong on every write.

The judgement has the retail env's keys and rule ids (`envs/retail/policy.py`: τ-bench retail's
wiki states the same rules), so the critic labeler (`datagen.labels.gold_feedback`) writes the
same sentences for both. A write off the gold plan breaks no rule: like retail's, its `rule` and
`violation` are None, and `off_plan` says how it differs from the next gold write (for people; the
labeler names the right call from the plan itself).
"""

from __future__ import annotations

from typing import Any

from lightning_asym.envs.retail.policy import AUTHENTICATE_FIRST, KNOWN_TOOLS, NO_NEEDLESS_TRANSFER
from lightning_asym.types import Action, Task

TRANSFER = "transfer_to_human_agents"
WRITE_TOOLS: dict[str, frozenset[str]] = {
    "retail": frozenset(
        {
            "cancel_pending_order",
            "exchange_delivered_order_items",
            "modify_pending_order_address",
            "modify_pending_order_items",
            "modify_pending_order_payment",
            "modify_user_address",
            "return_delivered_order_items",
        }
    ),
    "airline": frozenset(
        {
            "book_reservation",
            "cancel_reservation",
            "send_certificate",
            "update_reservation_baggages",
            "update_reservation_flights",
            "update_reservation_passengers",
        }
    ),
}
"""The tools that change τ-bench's database, by domain (every other tool only reads)."""
READ_TOOLS: dict[str, frozenset[str]] = {
    "retail": frozenset(
        {
            "calculate",
            "find_user_id_by_email",
            "find_user_id_by_name_zip",
            "get_order_details",
            "get_product_details",
            "get_user_details",
            "list_all_product_types",
            "think",
        }
    ),
    "airline": frozenset(
        {
            "calculate",
            "get_reservation_details",
            "get_user_details",
            "list_all_airports",
            "search_direct_flight",
            "search_onestop_flight",
            "think",
        }
    ),
}
AUTH_TOOLS: dict[str, frozenset[str]] = {
    "retail": frozenset({"find_user_id_by_email", "find_user_id_by_name_zip"}),
}
"""Calls that authenticate the user, by domain (absent: the domain needs none before a write)."""


def judgement(deviation: bool, rule: str | None = None, violation: str | None = None) -> dict[str, Any]:
    """The same keys as the retail env's judgement: `deviation`, `rule`, `violation`."""
    return {"deviation": deviation, "rule": rule, "violation": violation}


def _norm(v: Any) -> Any:
    if isinstance(v, str):
        return v.strip()
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_norm(x) for x in v]
    return v


def same_call(a: Action, b: Action) -> bool:
    """Whether two tool calls are the same call (name and arguments, strings stripped)."""
    return a.name == b.name and _norm(dict(a.kwargs)) == _norm(dict(b.kwargs))


def judge_action(
    domain: str, action: Action | None, remaining: list[Action], history: list[Action], task: Task
) -> dict[str, Any]:
    """`action` against the rest of the gold plan (`remaining`) and the successful calls so far (`history`);
    `domain` must be a key of `WRITE_TOOLS`."""
    if not isinstance(action, Action):
        return judgement(True, "parse", "the action could not be parsed")
    if action.is_reply:
        return judgement(False)
    writes, reads = WRITE_TOOLS.get(domain, frozenset()), READ_TOOLS.get(domain, frozenset())
    name = action.name
    if name == TRANSFER:
        if any(g.name == TRANSFER for g in remaining):
            return judgement(False)
        return judgement(
            True, NO_NEEDLESS_TRANSFER, "transferred to a human agent although the task can be done"
        )
    if name in reads:
        return judgement(False)
    if name not in writes:
        return judgement(True, KNOWN_TOOLS, f"called {name!r}, which is not a tool of tau-bench {domain}")
    auth = AUTH_TOOLS.get(domain)
    broken: tuple[str, str] | None = None
    if auth and not any(h.name in auth for h in history):
        broken = (
            AUTHENTICATE_FIRST,
            f"called {name} before authenticating the user (by email, or by name and zip)",
        )
    next_write = next((g for g in remaining if g.name in writes), None)
    if next_write is not None and same_call(action, next_write):
        return judgement(False, *(broken or (None, None)))
    if next_write is None:
        why = "a write although every write of the task is done"
    elif next_write.name != name:
        why = f"{name} where the task needs {next_write.name} next"
    else:
        keys = set(action.kwargs) | set(next_write.kwargs)
        bad = sorted(k for k in keys if _norm(action.kwargs.get(k)) != _norm(next_write.kwargs.get(k)))
        why = f"{name} with wrong arguments ({', '.join(bad)})"
    if broken:
        return judgement(True, *broken)
    return {**judgement(True), "off_plan": why}


def complete_plan(domain: str, gold: list[Action], user_id: str, data: Any) -> tuple[list[Action], int]:
    """τ-bench's gold list with the reads an agent needs first, and how many were added.

    τ-bench's gold lists hold the database-changing calls and only some reads: 45 of its 115
    retail test tasks write without ever looking the user up (the wiki's first rule), and many
    write ids that no earlier read showed. A plan-following actor (the gold replay, our noisy
    oracle) would break the authentication rule in every such episode, and a critic that asks
    for ids to be looked up could never be satisfied. So, before each write, we add the lookups
    that show what it uses: the user (retail: by email; the user's details for payment methods),
    the order or reservation, the product of each new item, and, for an address change, the
    user or the other order whose address it copies ("same as order #W…"). Reads never change
    the database, so τ-bench's reward (final database and outputs) is the same.
    """
    writes = WRITE_TOOLS.get(domain, frozenset())
    users = (data or {}).get("users") or {}
    products = (data or {}).get("products") or {}
    if not any(a.name in writes for a in gold) or user_id not in users:
        return list(gold), 0
    plan: list[Action] = []
    shown: set[tuple[str, str]] = set()

    def read(name: str, **kw: Any) -> None:
        key = (name, repr(sorted(kw.items())))
        if key not in shown and not any(a.name == name and a.kwargs == kw for a in plan):
            plan.append(Action(name, kw))
        shown.add(key)

    for a in gold:
        if a.name in writes:
            auth = AUTH_TOOLS.get(domain)
            if auth and not any(p.name in auth for p in plan) and users[user_id].get("email"):
                read("find_user_id_by_email", email=users[user_id]["email"])
            kw = a.kwargs
            if "payment_method_id" in kw or "payment_id" in kw or "user_id" in kw or domain == "airline":
                read("get_user_details", user_id=user_id)
            if isinstance(kw.get("order_id"), str):
                read("get_order_details", order_id=kw["order_id"])
            if isinstance(kw.get("reservation_id"), str):
                read("get_reservation_details", reservation_id=kw["reservation_id"])
            if "zip" in kw:  # an address write: read where the new address is shown, if it is anywhere
                source = _address_source(kw, users[user_id], user_id, (data or {}).get("orders") or {})
                if source is not None:
                    read(source[0], **source[1])
            for item in kw.get("new_item_ids") or []:
                pid = next((p for p, prod in products.items() if item in (prod.get("variants") or {})), None)
                if pid is not None:
                    read("get_product_details", product_id=pid)
        plan.append(a)
        if a.name not in writes:
            shown.add((a.name, repr(sorted(a.kwargs.items()))))
    return plan, len(plan) - len(gold)


ADDRESS_KEYS = ("address1", "address2", "city", "state", "country", "zip")


def _address_source(
    kw: dict[str, Any], user: dict[str, Any], user_id: str, orders: dict[str, Any]
) -> tuple[str, dict[str, str]] | None:
    """The read that shows the address an address write sets: the user's details when it is their
    default address, else another order of theirs that has it; None when no record has it."""
    new = {k: kw.get(k) for k in ADDRESS_KEYS}
    if {k: (user.get("address") or {}).get(k) for k in ADDRESS_KEYS} == new:
        return ("get_user_details", {"user_id": user_id})
    for oid in user.get("orders") or []:
        address = (orders.get(oid) or {}).get("address") or {}
        if oid != kw.get("order_id") and {k: address.get(k) for k in ADDRESS_KEYS} == new:
            return ("get_order_details", {"order_id": oid})
    return None
