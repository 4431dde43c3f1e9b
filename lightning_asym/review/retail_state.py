"""What a retail rule critic can know at one step: the conversation read as events, and the store.

The conversation is read by `lightning_asym.envs.retail.conversation.read_conversation` (the
one retail conversation reader, shared with the noisy oracle): calls and results, the
authenticated user, and whether the user's latest reply is an explicit "yes".

`current_db` is read access to the same data the agent's tools expose: the task's initial
database, rebuilt from its seed (`generate_db(task.data["db_seed"])`), with the
conversation's successful write calls replayed in order. It is not the gold plan: nothing
here reads the task's gold actions, required outputs or the env object.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from lightning_asym.envs.retail.conversation import Conversation
from lightning_asym.envs.retail.db import DB, generate_db
from lightning_asym.envs.retail.ops import order_refund_total
from lightning_asym.envs.retail.tasks import copy_db
from lightning_asym.envs.retail.tools import run_tool
from lightning_asym.types import Action, Task

_NUMBER_RE = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?")
_MAX_SUMS = 50_000


def norm_order_id(order_id: Any) -> str:
    """An order id with its '#', as the database keys it (the tools accept both)."""
    s = str(order_id)
    return s if s.startswith("#") else "#" + s


class StateCache:
    """Current databases keyed by (db seed, successful writes so far), least recently used first out."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self._dbs: OrderedDict[tuple[int, str], DB] = OrderedDict()

    def current_db(self, task: Task, conv: Conversation) -> DB:
        """The task's initial database with the conversation's successful writes replayed.

        The result is shared by later calls with the same key: copy it (`copy_db`) before a
        dry run.
        """
        seed = task.data.get("db_seed") if isinstance(task.data, dict) else None
        if seed is None:
            raise ValueError(
                f"task {task.id!r} has no data['db_seed']: RetailRuleCritic reviews retail tasks only; "
                "use it with env lightning_asym.envs.retail.RetailEnv"
            )
        writes = conv.writes
        keys = [self._key(int(seed), writes[:k]) for k in range(len(writes) + 1)]
        # the longest cached prefix of the writes, then the rest replayed on a copy of it
        k = next((k for k in range(len(writes), -1, -1) if keys[k] in self._dbs), None)
        if k == len(writes):
            self._dbs.move_to_end(keys[k])
            return self._dbs[keys[k]]
        db = generate_db(int(seed)) if k is None else copy_db(self._dbs[keys[k]])
        for a in writes[0 if k is None else k :]:
            run_tool(db, a.name, a.kwargs)  # a write that succeeded in the conversation succeeds here
        self._dbs[keys[-1]] = db
        while len(self._dbs) > self.size:
            self._dbs.popitem(last=False)
        return db

    @staticmethod
    def _key(seed: int, writes: list[Action]) -> tuple[int, str]:
        return seed, json.dumps([[a.name, a.kwargs] for a in writes], sort_keys=True)


def dry_run(db: DB, action: Action) -> tuple[str, bool]:
    """`run_tool` on a copy of `db`: what the tool would answer, leaving `db` unchanged."""
    return run_tool(copy_db(db), action.name, action.kwargs)


# ----------------------------------------------------------------------------- amounts


def _numbers(text: str) -> set[str]:
    out = set()
    for raw in _NUMBER_RE.findall(text):
        try:
            out.add(f"{abs(float(raw.replace(',', ''))):.2f}")
        except ValueError:
            continue
    return out


def _json_objects(texts: Sequence[str]) -> list[dict[str, Any]]:
    out = []
    for t in texts:
        try:
            obj = json.loads(t)
        except (json.JSONDecodeError, TypeError):
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def supported_amounts(conv: Conversation) -> set[str] | None:
    """Amounts (normalized like "12.50") an agent may state given what this conversation showed.

    Every number in a tool result or a user message, and simple derivations from the orders and
    products the tools returned: sums of any subset of an order's item prices (totals, refunds
    of returns), an order's net payment (a cancellation's refund), and the price difference of
    swapping any of an order's items for available variants of the same product seen in product
    details.
    None when an order has too many combinations to bound (then no amount can be called made up).
    """
    out: set[str] = set()
    for text in [*conv.tool_texts, *conv.user_texts]:
        out |= _numbers(text)
    objects = _json_objects(conv.tool_texts)
    prices: dict[str, list[float]] = {}  # product id -> prices of its available variants seen
    for obj in objects:
        if isinstance(obj.get("variants"), dict) and "product_id" in obj:
            prices[str(obj["product_id"])] = [
                v["price"]
                for v in obj["variants"].values()
                if isinstance(v, dict) and "price" in v and v.get("available", True)
            ]
    for order in objects:
        items = order.get("items")
        if not isinstance(items, list) or not all(isinstance(i, dict) and "price" in i for i in items):
            continue
        cents = [round(float(i["price"]) * 100) for i in items]
        swaps = [
            [0, *(round(p * 100) - c for p in prices.get(str(i.get("product_id")), []))]
            for i, c in zip(items, cents)
        ]
        subsets, swapped = _sums([[0, c] for c in cents]), _sums(swaps)
        if subsets is None or swapped is None:
            return None  # too many combinations to tell a made-up amount from a derived one
        out.update(_money(c) for c in subsets | swapped)
        if isinstance(order.get("payment_history"), list):
            try:
                out.add(f"{abs(order_refund_total(order)):.2f}")
            except (KeyError, TypeError, ValueError):
                pass
    return out


def _money(cents: int) -> str:
    return f"{abs(cents) / 100:.2f}"


def _sums(choices: list[list[int]]) -> set[int] | None:
    """Every sum of one value from each list (in cents); None when there are over `_MAX_SUMS`."""
    sums = {0}
    for values in choices:
        sums = {s + v for s in sums for v in set(values)}
        if len(sums) > _MAX_SUMS:
            return None
    return sums


def available_counts(conv: Conversation) -> dict[str, int]:
    """Lower-cased product name -> how many of its variants are available, from product details seen."""
    out = {}
    for obj in _json_objects([c.text for c in conv.calls if c.ok and c.action.name == "get_product_details"]):
        if isinstance(obj.get("variants"), dict) and isinstance(obj.get("name"), str):
            out[obj["name"].lower()] = sum(bool(v.get("available")) for v in obj["variants"].values())
    return out
