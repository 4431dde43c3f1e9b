"""One user goal at a time ("intents"): how each is built from a database and described.

An intent is a JSON-friendly dict: `kind`, `order_id`, the gold `action` (a write, a
transfer, or None for questions and refusals), the oracle's `lookups`, the `outputs` the
agent must say, and texts: `opening` (vague first request), `details` (the full request),
`describe` (what a correct confirmation says), `report` (what a correct agent says after),
`confirm` (tokens a confirmation must contain for the user to say yes) and `summary`.
`confirm` is a list of groups; a group is satisfied when all words of one of its
alternatives appear in the agent's text.
"""

from __future__ import annotations

import random
from typing import Any

from lightning_asym.envs.retail.db import DB, _address, describe_item, describe_pm, order_total
from lightning_asym.envs.retail.ops import CANCEL_REASONS, order_refund_total
from lightning_asym.envs.retail.tools import TRANSFER

Intent = dict[str, Any]
WRITE_KINDS = (
    "cancel",
    "modify_items",
    "modify_address",
    "modify_payment",
    "return",
    "exchange",
    "user_address",
)
OUT_OF_SCOPE = (
    "get a price adjustment on order {oid}, because the price dropped after I bought it",
    "change the delivery date of order {oid}",
    "file a warranty claim for an item of order {oid}",
)


def _money(x: float) -> str:
    return f"{abs(x):.2f}"


def _order_group(oid: str) -> list[list[str]]:
    return [[oid.lower()], [oid.lstrip("#").lower()]]


def _pm_group(pm: dict[str, Any]) -> list[list[str]]:
    alt = (
        [pm["last_four"]]
        if pm["source"] == "credit_card"
        else ["gift card" if pm["source"] == "gift_card" else "paypal"]
    )
    return [[pm["id"].lower()], alt]


def _item_group(item: dict[str, Any]) -> list[list[str]]:
    return [[item["item_id"]], [item["name"].lower(), *[str(v).lower() for v in item["options"].values()]]]


def _addr_text(a: dict[str, str]) -> str:
    line2 = f", {a['address2']}" if a["address2"] else ""
    return f"{a['address1']}{line2}, {a['city']}, {a['state']} {a['zip']}, {a['country']}"


def _act(name: str, **kwargs: Any) -> dict[str, Any]:
    return {"name": name, "kwargs": kwargs}


def _ref(order: dict[str, Any], search: bool) -> str:
    """How the user names an order: by id, or by what is in it when they forgot the id."""
    if not search:
        return f"order {order['order_id']}"
    return f"my order with the {order['items'][0]['name']} (I don't remember the order number)"


def _base(kind: str, user: dict[str, Any], order: dict[str, Any] | None, search: bool) -> Intent:
    lookups = []
    if order is not None:
        ids = user["orders"][: user["orders"].index(order["order_id"]) + 1] if search else [order["order_id"]]
        lookups = [_act("get_order_details", order_id=o) for o in ids]
    return {
        "kind": kind,
        "order_id": order["order_id"] if order else None,
        "search": search,
        "action": None,
        "lookups": lookups,
        "outputs": [],
        "confirm": [_order_group(order["order_id"])] if order else [],
    }


def _swaps(rng: random.Random, db: DB, order: dict[str, Any]) -> list[tuple[dict, dict]]:
    """Up to two (old item, new available variant of the same product) pairs."""
    pairs = []
    items = list(order["items"])
    rng.shuffle(items)
    for it in items:
        alts = [
            v
            for v in db["products"][it["product_id"]]["variants"].values()
            if v["available"] and v["item_id"] != it["item_id"]
        ]
        if alts:
            new = rng.choice(sorted(alts, key=lambda v: v["item_id"]))
            pairs.append((it, {"name": it["name"], **new}))
        if len(pairs) == rng.choice((1, 1, 2)):
            break
    return pairs


def _pick_pm(rng: random.Random, user: dict[str, Any], amount: float, exclude: str | None = None):
    pms = [
        p
        for p in user["payment_methods"].values()
        if p["id"] != exclude and not (p["source"] == "gift_card" and amount > p["balance"])
    ]
    return rng.choice(sorted(pms, key=lambda p: p["id"])) if pms else None


def build_intent(
    kind: str, rng: random.Random, db: DB, user: dict[str, Any], used: set[str]
) -> Intent | None:
    """An intent of `kind` for `user` on an order not in `used`, or None if none fits."""
    orders = [db["orders"][o] for o in user["orders"] if o not in used]
    want = {
        "cancel": "pending",
        "modify_address": "pending",
        "modify_payment": "pending",
        "modify_items": "pending",
        "return": "delivered",
        "exchange": "delivered",
        "refuse": ("processed", "delivered"),
    }.get(kind)
    if want is not None:
        orders = [o for o in orders if o["status"] in (want if isinstance(want, tuple) else (want,))]
        if not orders:
            return None
    order = rng.choice(orders) if orders else None
    if order is None and kind not in ("user_address", "available_count"):
        return None
    search = order is not None and kind not in ("user_address", "available_count") and rng.random() < 0.25
    if search:  # the user names the order by its first product, so that product must single it out
        first = order["items"][0]["name"]
        search = all(
            first not in (i["name"] for i in db["orders"][o]["items"])
            for o in user["orders"]
            if o != order["order_id"]
        )
    it = _base(kind, user, order if kind not in ("user_address", "available_count") else None, search)
    ask = rng.random() < 0.5
    uid = user["user_id"]
    if kind == "cancel":
        oid, reason = order["order_id"], rng.choice(CANCEL_REASONS)
        refund = order_refund_total(order)
        it.update(
            action=_act("cancel_pending_order", order_id=oid, reason=reason),
            opening="Hi, I need to cancel an order.",
            details=f"I want to cancel {_ref(order, search)}, because it is {reason}."
            + (" How much will be refunded?" if ask else ""),
            describe=f"cancel order {oid} (reason: {reason}); ${_money(refund)} will be refunded to the "
            f"original payment method",
            report=f"Order {oid} has been cancelled and ${_money(refund)} will be refunded to the original "
            "payment method.",
            summary=f"cancel pending order {oid} because it is {reason}",
            outputs=[_money(refund)] if ask else [],
        )
        it["confirm"].append([[reason]])
    elif kind in ("modify_items", "exchange"):
        pairs = _swaps(rng, db, order)
        if not pairs:
            return None
        diff = round(sum(n["price"] - o["price"] for o, n in pairs), 2)
        pm = _pick_pm(rng, user, diff)
        if pm is None:
            return None
        oid = order["order_id"]
        name = "modify_pending_order_items" if kind == "modify_items" else "exchange_delivered_order_items"
        swaps = "; ".join(f"{describe_item(o)} for {describe_item(n)}" for o, n in pairs)
        swaps_ids = "; ".join(f"item {o['item_id']} for item {n['item_id']}" for o, n in pairs)
        diff_txt = (
            (f"you pay ${_money(diff)}" if diff > 0 else f"you get ${_money(diff)} back")
            if diff
            else ("there is no price difference")
        )
        it["lookups"] += [
            _act("get_product_details", product_id=p) for p in sorted({o["product_id"] for o, _ in pairs})
        ]
        it.update(
            action=_act(
                name,
                order_id=oid,
                item_ids=[o["item_id"] for o, _ in pairs],
                new_item_ids=[n["item_id"] for _, n in pairs],
                payment_method_id=pm["id"],
            ),
            opening="Hi, I'd like to "
            + (
                "change some items of an order."
                if kind == "modify_items"
                else "exchange some items I received."
            ),
            details=f"For {_ref(order, search)}, I want to swap {swaps}. Use my {describe_pm(pm)} ("
            f"{pm['id']}) for the price difference." + (" What is the price difference?" if ask else ""),
            describe=f"{'modify' if kind == 'modify_items' else 'exchange'} in order {oid}: {swaps} ("
            f"{swaps_ids}); {diff_txt}, using your {describe_pm(pm)} ({pm['id']})",
            report=f"Done: in order {oid} {swaps_ids}; {diff_txt}.",
            summary=f"{'modify items of pending' if kind == 'modify_items' else 'exchange items of delivered'}"
            f" order {oid}: {swaps}; price difference with {pm['id']}",
            outputs=[_money(diff)] if ask and diff else [],
        )
        it["confirm"] += (
            [_item_group(o) for o, _ in pairs] + [_item_group(n) for _, n in pairs] + [_pm_group(pm)]
        )
    elif kind in ("modify_address", "user_address"):
        addr = _address(rng)
        if kind == "modify_address":
            oid = order["order_id"]
            act = _act("modify_pending_order_address", order_id=oid, **addr)
            describe, report = (
                f"change the shipping address of order {oid} to",
                f"Order {oid} will now ship to",
            )
            details, summary = f"Please ship {_ref(order, search)} to", f"ship pending order {oid} to"
        else:
            act = _act("modify_user_address", user_id=uid, **addr)
            describe, report = "change your default address to", "Your default address is now"
            details, summary = "Please update my default address to", "change the user's default address to"
        it.update(
            action=act,
            opening="Hi, I need to change an address.",
            details=f"{details} {_addr_text(addr)}.",
            describe=f"{describe} {_addr_text(addr)}",
            report=f"{report} {_addr_text(addr)}.",
            summary=f"{summary} {_addr_text(addr)}",
        )
        it["confirm"] += [[[addr["zip"]]], [[addr["address1"].lower()]]]
    elif kind == "modify_payment":
        pays = [p for p in order["payment_history"] if p["transaction_type"] == "payment"]
        if len(pays) != 1:
            return None
        pm = _pick_pm(rng, user, pays[0]["amount"], exclude=pays[0]["payment_method_id"])
        if pm is None:
            return None
        oid = order["order_id"]
        it.update(
            action=_act("modify_pending_order_payment", order_id=oid, payment_method_id=pm["id"]),
            opening="Hi, I want to change how I pay for an order.",
            details=f"For {_ref(order, search)}, I want to pay with my {describe_pm(pm)} ({pm['id']}).",
            describe=f"change the payment method of order {oid} to your {describe_pm(pm)} ({pm['id']})",
            report=f"Order {oid} is now paid with your {describe_pm(pm)}.",
            summary=f"pay pending order {oid} with {pm['id']}",
        )
        it["confirm"].append(_pm_group(pm))
    elif kind == "return":
        items = rng.sample(order["items"], rng.randint(1, len(order["items"])))
        refund = round(sum(i["price"] for i in items), 2)
        original = order["payment_history"][0]["payment_method_id"]
        cards = sorted(p for p, v in user["payment_methods"].items() if v["source"] == "gift_card")
        pm = user["payment_methods"][rng.choice(cards) if cards and rng.random() < 0.4 else original]
        oid = order["order_id"]
        names = "; ".join(describe_item(i) for i in items)
        ids = ", ".join(sorted(i["item_id"] for i in items))
        it.update(
            action=_act(
                "return_delivered_order_items",
                order_id=oid,
                item_ids=sorted(i["item_id"] for i in items),
                payment_method_id=pm["id"],
            ),
            opening="Hi, I want to return some things I received.",
            details=f"I want to return these items from {_ref(order, search)}: {names}. Please refund my "
            f"{describe_pm(pm)} ({pm['id']})." + (" How much will I get back?" if ask else ""),
            describe=f"return from order {oid} the items {names} (ids {ids}); ${_money(refund)} will be "
            f"refunded to your {describe_pm(pm)} ({pm['id']})",
            report=f"The return of items {ids} of order {oid} is requested; you will get ${_money(refund)} "
            f"back on your {describe_pm(pm)}.",
            summary=f"return {names} of delivered order {oid}, refund to {pm['id']}",
            outputs=[_money(refund)] if ask or rng.random() < 0.5 else [],
        )
        it["confirm"] += [_item_group(i) for i in items] + [_pm_group(pm)]
    elif kind == "order_total":
        oid, total = order["order_id"], order_total(order)
        it.update(
            opening="Hi, I have a question about an order.",
            details=f"What was the total price of the items in {_ref(order, search)}?",
            report=f"The items in order {oid} cost ${_money(total)} in total.",
            summary=f"ask for the total of order {oid}",
            outputs=[_money(total)],
        )
    elif kind == "available_count":
        products = sorted(db["products"].values(), key=lambda p: p["product_id"])
        p = rng.choice(products)
        n = sum(v["available"] for v in p["variants"].values())
        it["lookups"] = [
            _act("list_all_product_types"),
            _act("get_product_details", product_id=p["product_id"]),
        ]
        it.update(
            opening="Hi, I have a question about a product.",
            details=f"How many variants of the {p['name']} are available right now?",
            report=f"Right now the {p['name']} has {n} available variants.",
            summary=f"ask how many {p['name']} variants are available",
            outputs=[str(n)],
        )
    elif kind == "refuse":
        oid = order["order_id"]
        it.update(
            opening="Hi, I need to cancel an order.",
            details=f"I want to cancel {_ref(order, search)}, because it is no longer needed.",
            report=f"I'm sorry, but order {oid} is {order['status']}, so it cannot be cancelled; only "
            "pending orders can.",
            summary=f"ask to cancel {order['status']} order {oid} (must be refused)",
        )
    elif kind == "transfer":
        goal = rng.choice(OUT_OF_SCOPE).format(oid=order["order_id"])
        it.update(
            action=_act(TRANSFER, summary=f"The user wants to {goal}."),
            opening="Hi, I need help with an order.",
            details=f"I want to {goal}.",
            report="",
            summary=f"wants to {goal} (out of scope: transfer to a human agent)",
        )
    else:
        raise ValueError(f"unknown intent kind {kind!r}")
    if order is not None and kind not in ("user_address", "available_count"):
        used.add(order["order_id"])
    return it
