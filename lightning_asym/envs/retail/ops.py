"""What each retail tool does to the database: `fn(db, **kwargs) -> str`, or `ToolError`.

All checks run before any mutation, so a refused call leaves the database unchanged. The
tools enforce the state rules of the policy (only pending orders can be cancelled...) but
not authentication or confirmation, as in tau-bench: the env judges those separately.
Lists that have no meaningful order are stored sorted, so equal intents give equal hashes.
"""

from __future__ import annotations

import ast
import json
import operator
from typing import Any

from lightning_asym.envs.retail.db import DB

CANCEL_REASONS = ("no longer needed", "ordered by mistake")
ADDRESS_FIELDS = ("address1", "address2", "city", "state", "country", "zip")


class ToolError(Exception):
    """A tool call the database refuses; its message becomes the `Error: ...` observation."""


# ----------------------------------------------------------------------------- helpers


def _order(db: DB, order_id: str) -> dict[str, Any]:
    # agents often drop the '#'; accepting both costs nothing and keeps ids canonical in the DB
    oid = order_id if order_id.startswith("#") else "#" + order_id
    if oid not in db["orders"]:
        raise ToolError(f"order {order_id} not found")
    return db["orders"][oid]


def _user(db: DB, user_id: str) -> dict[str, Any]:
    if user_id not in db["users"]:
        raise ToolError(f"user {user_id} not found")
    return db["users"][user_id]


def _pm(db: DB, order: dict[str, Any], pm_id: str) -> dict[str, Any]:
    pms = db["users"][order["user_id"]]["payment_methods"]
    if pm_id not in pms:
        raise ToolError(f"payment method {pm_id} not found for the user of order {order['order_id']}")
    return pms[pm_id]


def _check_items(order: dict[str, Any], item_ids: list[str]) -> list[dict[str, Any]]:
    """The order's items named by `item_ids`, in that order. An id may repeat as often as the
    order holds that item (two identical items), as in τ-bench; each repeat is the next such item."""
    if not item_ids:
        raise ToolError("item_ids must not be empty")
    left: dict[str, list[dict[str, Any]]] = {}
    for item in order["items"]:
        left.setdefault(item["item_id"], []).append(item)
    missing = sorted({i for i in item_ids if item_ids.count(i) > len(left.get(i, []))})
    if missing:
        raise ToolError(
            f"item(s) {', '.join(missing)} not found (as often as listed) in order {order['order_id']}"
        )
    return [left[i].pop(0) for i in item_ids]


def _check_swaps(db: DB, order: dict[str, Any], item_ids: list[str], new_item_ids: list[str]) -> list[tuple]:
    """Validated (old item, new variant) pairs, in the order given. A new item may be the old
    one (a replacement of the same variant), as τ-bench allows."""
    if len(item_ids) != len(new_item_ids):
        raise ToolError("item_ids and new_item_ids must have the same length")
    olds = _check_items(order, item_ids)
    pairs = []
    for old, new_id in zip(olds, new_item_ids):
        variants = db["products"][old["product_id"]]["variants"]
        if new_id not in variants:
            raise ToolError(
                f"new item {new_id} is not a variant of product {old['name']} ({old['product_id']})"
            )
        new = variants[new_id]
        if not new["available"]:
            raise ToolError(f"new item {new_id} is not available")
        pairs.append((old, new))
    return pairs


def _price_difference(pairs: list[tuple]) -> float:
    """New minus old prices, summed in the order the items were given, as τ-bench sums them (so the
    same float comes out, last digit included; the agent sees it in the tool's output)."""
    diff = 0.0
    for old, new in pairs:
        diff += new["price"] - old["price"]
    return diff


def _charge(pm: dict[str, Any], amount: float) -> None:
    """Check that a gift card covers `amount` (> 0 means the user pays)."""
    if pm["source"] == "gift_card" and amount > pm["balance"] + 1e-9:
        raise ToolError(f"insufficient gift card balance ({pm['balance']:.2f}) to pay {amount:.2f}")


def _pay(order: dict[str, Any], pm: dict[str, Any], amount: float) -> None:
    """Record a payment (amount > 0) or refund (amount < 0) and move gift card money."""
    amount = round(amount, 2)
    if amount == 0:
        return
    kind = "payment" if amount > 0 else "refund"
    order["payment_history"].append(
        {"transaction_type": kind, "amount": abs(amount), "payment_method_id": pm["id"]}
    )
    if pm["source"] == "gift_card":
        pm["balance"] = round(pm["balance"] - amount, 2)


def _pending(order: dict[str, Any], what: str) -> None:
    # exactly "pending", as τ-bench: an order whose items were modified is "pending (item
    # modified)" and takes no further change (the policy: only pending orders can change)
    if order["status"] != "pending":
        raise ToolError(f"non-pending order {order['order_id']} (status {order['status']}) cannot be {what}")


def _delivered(order: dict[str, Any], what: str) -> None:
    if order["status"] != "delivered":
        raise ToolError(
            f"non-delivered order {order['order_id']} (status {order['status']}) cannot be {what}"
        )


def _dump(x: Any) -> str:
    return json.dumps(x, sort_keys=True)


# ----------------------------------------------------------------------------- reads


def find_user_id_by_email(db: DB, email: str) -> str:
    for uid, u in db["users"].items():
        if u["email"].lower() == email.strip().lower():
            return uid
    raise ToolError("user not found")


def find_user_id_by_name_zip(db: DB, first_name: str, last_name: str, zip: str) -> str:
    for uid, u in db["users"].items():
        if (
            u["name"]["first_name"].lower() == first_name.strip().lower()
            and u["name"]["last_name"].lower() == last_name.strip().lower()
            and u["address"]["zip"] == zip.strip()
        ):
            return uid
    raise ToolError("user not found")


def get_user_details(db: DB, user_id: str) -> str:
    return _dump(_user(db, user_id))


def get_order_details(db: DB, order_id: str) -> str:
    return _dump(_order(db, order_id))


def get_product_details(db: DB, product_id: str) -> str:
    if product_id not in db["products"]:
        raise ToolError(f"product {product_id} not found")
    return _dump(db["products"][product_id])


def list_all_product_types(db: DB) -> str:
    return _dump({p["name"]: pid for pid, p in db["products"].items()})


_ARITHMETIC = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_SIGNS = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    ):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
        return _ARITHMETIC[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    if isinstance(node, ast.UnaryOp) and type(node.op) in _SIGNS:
        return _SIGNS[type(node.op)](_evaluate(node.operand))
    raise ToolError("the expression may hold only numbers, + - * /, parentheses and spaces")


def calculate(db: DB, expression: str) -> str:
    """The value of an arithmetic expression, rounded to cents (τ-bench's `calculate`; ours
    parses the expression rather than evaluating code)."""
    if not expression.strip() or any(c not in "0123456789+-*/(). " for c in expression):
        raise ToolError("the expression may hold only numbers, + - * /, parentheses and spaces")
    try:
        value = _evaluate(ast.parse(expression.strip(), mode="eval"))
    except SyntaxError as e:
        raise ToolError(f"the expression does not parse ({e.msg})") from e
    except ZeroDivisionError as e:
        raise ToolError("division by zero") from e
    return str(round(value, 2))


def think(db: DB, thought: str) -> str:
    return ""


def transfer_to_human_agents(db: DB, summary: str) -> str:
    return "Transfer successful"


# ----------------------------------------------------------------------------- writes


def cancel_pending_order(db: DB, order_id: str, reason: str) -> str:
    order = _order(db, order_id)
    _pending(order, "cancelled")
    if reason not in CANCEL_REASONS:
        raise ToolError(f"reason must be one of {list(CANCEL_REASONS)}")
    # reverse every earlier transaction on its own method; resolve all methods before mutating
    refunds = [
        (
            _pm(db, order, p["payment_method_id"]),
            p["amount"] if p["transaction_type"] == "payment" else -p["amount"],
        )
        for p in order["payment_history"]
    ]
    # τ-bench records every earlier transaction as a refund, an earlier refund too (after a payment
    # change, that pays the old amount back twice); we reverse each one. The two agree on an order
    # paid once, the only kind τ-bench's gold cancels (tools/retail_vs_tau_bench.py).
    for pm, amount in refunds:
        _pay(order, pm, -amount)
    order["status"] = "cancelled"
    order["cancel_reason"] = reason
    return _dump(order)


def modify_pending_order_items(
    db: DB, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> str:
    order = _order(db, order_id)
    if order["status"].startswith("pending ("):
        raise ToolError(f"the items of order {order['order_id']} were already modified once")
    _pending(order, "modified")
    pairs = _check_swaps(db, order, item_ids, new_item_ids)
    pm = _pm(db, order, payment_method_id)
    diff = _price_difference(pairs)
    _charge(pm, diff)
    # τ-bench's record: the unrounded difference, even a zero one (as a refund of 0); a gift card's
    # balance is rounded to cents after the move
    kind = "payment" if diff > 0 else "refund"
    order["payment_history"].append(
        {"transaction_type": kind, "amount": abs(diff), "payment_method_id": pm["id"]}
    )
    if pm["source"] == "gift_card":
        pm["balance"] = round(pm["balance"] - diff, 2)
    for old, new in pairs:
        old.update(item_id=new["item_id"], price=new["price"], options=dict(new["options"]))
    order["status"] = "pending (item modified)"  # τ-bench's status string
    return _dump(order)


def modify_pending_order_address(
    db: DB, order_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> str:
    order = _order(db, order_id)
    _pending(order, "modified")
    order["address"] = dict(
        zip=zip, address1=address1, address2=address2, city=city, state=state, country=country
    )
    return _dump(order)


def modify_pending_order_payment(db: DB, order_id: str, payment_method_id: str) -> str:
    order = _order(db, order_id)
    _pending(order, "modified")
    payments = [p for p in order["payment_history"] if p["transaction_type"] == "payment"]
    if len(payments) != 1:
        raise ToolError("only an order paid with exactly one payment can change its payment method")
    old = _pm(db, order, payments[0]["payment_method_id"])
    new = _pm(db, order, payment_method_id)
    if new["id"] == old["id"]:
        raise ToolError("the new payment method must differ from the current one")
    total = payments[0]["amount"]
    _charge(new, total)
    _pay(order, new, total)
    _pay(order, old, -total)
    return _dump(order)


def return_delivered_order_items(db: DB, order_id: str, item_ids: list[str], payment_method_id: str) -> str:
    order = _order(db, order_id)
    _delivered(order, "returned")
    _check_items(order, item_ids)
    pm = _pm(db, order, payment_method_id)
    original = order["payment_history"][0]["payment_method_id"]
    if pm["id"] != original and pm["source"] != "gift_card":
        raise ToolError("the refund must go to the original payment method or an existing gift card")
    order["status"] = "return requested"
    order["return_items"] = sorted(item_ids)
    order["return_payment_method_id"] = pm["id"]
    return _dump(order)


def exchange_delivered_order_items(
    db: DB, order_id: str, item_ids: list[str], new_item_ids: list[str], payment_method_id: str
) -> str:
    order = _order(db, order_id)
    _delivered(order, "exchanged")
    pairs = _check_swaps(db, order, item_ids, new_item_ids)
    pm = _pm(db, order, payment_method_id)
    diff = round(_price_difference(pairs), 2)
    _charge(pm, diff)
    order["status"] = "exchange requested"
    # each list sorted on its own, as τ-bench stores them (the pairs are in the call, not here)
    order["exchange_items"] = sorted(item_ids)
    order["exchange_new_items"] = sorted(new_item_ids)
    order["exchange_payment_method_id"] = pm["id"]
    order["exchange_price_difference"] = diff
    return _dump(order)


def modify_user_address(
    db: DB, user_id: str, address1: str, address2: str, city: str, state: str, country: str, zip: str
) -> str:
    user = _user(db, user_id)
    user["address"] = dict(
        zip=zip, address1=address1, address2=address2, city=city, state=state, country=country
    )
    return _dump(user)


def order_refund_total(order: dict[str, Any]) -> float:
    """Net amount paid on an order (what a cancellation refunds)."""
    return round(
        sum(
            p["amount"] * (1 if p["transaction_type"] == "payment" else -1) for p in order["payment_history"]
        ),
        2,
    )
