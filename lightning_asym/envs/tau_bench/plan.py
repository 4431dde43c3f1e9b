"""τ-bench tasks as agent plans (`envs/agent_plan.py`): the steps, and real wrong values from its database.

A task's plan is its gold list completed with the reads an agent needs (`judge.complete_plan`),
each call tagged by what it does to τ-bench's database (`judge.WRITE_TOOLS`, `judge.AUTH_TOOLS`).
For each write, the wrong values a sloppy agent could use are read from τ-bench's database,
so the mistake is a real id of the same user rather than a typo:

=========================  =====================================================================
argument                   alternatives
=========================  =====================================================================
``order_id``               the user's other orders
``reservation_id``         the user's other reservations (airline)
``item_ids``               per position: the order's other items
``new_item_ids``           per position: the product's other available variants
``payment_method_id``,     the user's other payment methods
``payment_id``
``reason``                 the other cancellation reason (retail)
address fields             the address the write replaces (the order's or the user's), where it differs
=========================  =====================================================================
"""

from __future__ import annotations

from typing import Any

from lightning_asym.envs.agent_plan import PLAN_KEY, plan_step
from lightning_asym.envs.tau_bench.judge import ADDRESS_KEYS, AUTH_TOOLS, TRANSFER, WRITE_TOOLS
from lightning_asym.types import Action

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
"""τ-bench retail's two cancellation reasons (its `cancel_pending_order` accepts no other)."""


def kind_of(domain: str, name: str) -> str:
    """`auth`, `write`, `transfer` or `read`: what a call of `name` is in τ-bench `domain`."""
    if name in AUTH_TOOLS.get(domain, ()):
        return "auth"
    if name in WRITE_TOOLS.get(domain, ()):
        return "write"
    return "transfer" if name == TRANSFER else "read"


def agent_plan(domain: str, plan: list[Action], user_id: str, data: Any) -> dict[str, Any]:
    """`{PLAN_KEY: {...}}` for a task whose completed gold plan is `plan` (see the module docstring)."""
    steps = []
    for a in plan:
        kind = kind_of(domain, a.name)
        alts = alternatives(a, user_id, data or {}) if kind == "write" else None
        steps.append(plan_step(kind, a, alts))
    return {PLAN_KEY: {"steps": steps}}


def _others(values: Any, gold: Any) -> list[Any]:
    return sorted({v for v in values if v != gold})


def alternatives(write: Action, user_id: str, data: dict[str, Any]) -> dict[str, list[Any]]:
    """Real wrong values for `write`'s arguments, read from τ-bench's database `data`."""
    kw = write.kwargs
    users, orders, products = data.get("users") or {}, data.get("orders") or {}, data.get("products") or {}
    user = users.get(user_id) or {}
    out: dict[str, list[Any]] = {}
    if isinstance(kw.get("order_id"), str):
        out["order_id"] = _others(user.get("orders") or [], kw["order_id"])
    if isinstance(kw.get("reservation_id"), str):
        out["reservation_id"] = _others(user.get("reservations") or [], kw["reservation_id"])
    for key in ("payment_method_id", "payment_id"):
        if isinstance(kw.get(key), str):
            out[key] = _others(user.get("payment_methods") or {}, kw[key])
    if kw.get("reason") in CANCEL_REASONS:
        out["reason"] = _others(CANCEL_REASONS, kw["reason"])
    order = orders.get(kw.get("order_id")) if isinstance(kw.get("order_id"), str) else None
    items = (order or {}).get("items") or []
    if isinstance(kw.get("item_ids"), list):
        others = _others((i["item_id"] for i in items), None)
        out["item_ids"] = [[i for i in others if i not in kw["item_ids"]] for _ in kw["item_ids"]]
    if isinstance(kw.get("new_item_ids"), list):
        per = []
        for new in kw["new_item_ids"]:
            variants = next(
                (p.get("variants") or {} for p in products.values() if new in (p.get("variants") or {})), {}
            )
            per.append(sorted(v for v, var in variants.items() if v != new and var.get("available")))
        out["new_item_ids"] = per
    if "zip" in kw:  # an address write: the address it replaces is the plausible slip
        old = (order or {}).get("address") if write.name.startswith("modify_pending") else user.get("address")
        for key in ADDRESS_KEYS:
            if isinstance(kw.get(key), str) and (old or {}).get(key) not in (None, kw[key]):
                out[key] = [old[key]]
    return out
