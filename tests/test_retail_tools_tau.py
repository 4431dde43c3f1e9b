"""Our retail tools where they follow τ-bench retail's effects (issue 12): an item exchanged for
itself, ids repeated as often as held, the unrounded price difference, and `calculate`.
`tools/retail_vs_tau_bench.py` checks the whole effect against τ-bench's own tools."""

from __future__ import annotations

import json

import pytest
from test_retail_tools import _ok, _order, _refused

from lightning_asym.envs.retail import db_hash, generate_db


def test_an_item_can_be_exchanged_for_itself_and_listed_as_often_as_held():
    """As τ-bench: a replacement of the same variant is an exchange, and an id repeats as often as
    the order holds the item."""
    db = generate_db(0)
    order = _order(db, "delivered", lambda db, o: len(o["items"]) >= 2)
    first = order["items"][0]
    db["products"][first["product_id"]]["variants"][first["item_id"]]["available"] = True
    order["items"][1] = json.loads(json.dumps(first))  # the order now holds that item twice
    pm = next(iter(db["users"][order["user_id"]]["payment_methods"].values()))
    pm["balance"] = 10_000.0
    kw = dict(order_id=order["order_id"], payment_method_id=pm["id"])
    _refused(
        db,
        "exchange_delivered_order_items",
        item_ids=[first["item_id"]] * 3,
        new_item_ids=[first["item_id"]] * 3,
        **kw,
    )
    twice = [first["item_id"]] * 2
    _ok(db, "exchange_delivered_order_items", item_ids=twice, new_item_ids=twice, **kw)
    assert order["exchange_items"] == twice and order["exchange_price_difference"] == 0


def _pending_with(n: int) -> tuple[dict, dict]:
    for seed in range(100):
        db = generate_db(seed)
        try:
            return db, _order(db, "pending", lambda db, o: len(o["items"]) >= n)
        except LookupError:
            continue
    raise LookupError(f"no pending order with {n} items in 100 seeds")


def test_modify_items_records_the_unrounded_difference_in_the_given_order():
    db, order = _pending_with(3)
    user = db["users"][order["user_id"]]
    pm = next(iter(user["payment_methods"].values()))
    pm["balance"] = 10_000.0
    prices = [0.1, 0.2, 0.3]
    for item in order["items"][:3]:
        db["products"][item["product_id"]]["variants"][item["item_id"]]["available"] = True
        item["price"] = 0.0
    ids = [i["item_id"] for i in order["items"][:3]]
    for item_id, price in zip(ids, prices):  # each item "becomes" itself at a new price
        product = next(p for p in db["products"].values() if item_id in p["variants"])
        product["variants"][item_id]["price"] = price
    before = json.loads(json.dumps(db))
    _ok(
        db,
        "modify_pending_order_items",
        order_id=order["order_id"],
        item_ids=ids,
        new_item_ids=ids,
        payment_method_id=pm["id"],
    )
    assert order["payment_history"][-1]["amount"] == (0.1 + 0.2) + 0.3  # 0.6000000000000001, as τ-bench
    other = before
    o2 = other["orders"][order["order_id"]]
    _ok(
        other,
        "modify_pending_order_items",
        order_id=o2["order_id"],
        item_ids=ids[::-1],
        new_item_ids=ids[::-1],
        payment_method_id=pm["id"],
    )
    assert o2["payment_history"][-1]["amount"] == (0.3 + 0.2) + 0.1  # 0.6
    assert db_hash(db) == db_hash(other)  # compared in cents: the listing order cannot change the reward


@pytest.mark.parametrize(
    "expression, result",
    [
        ("2 + 2", "4.0"),
        ("(120.5 - 99.99) * 2", "41.02"),
        ("10 / 4", "2.5"),
        ("-3 + 1", "-2.0"),
        ("1/3", "0.33"),
    ],
)
def test_calculate(expression, result):
    db = generate_db(0)
    before = db_hash(db)
    assert _ok(db, "calculate", expression=expression) == result
    assert db_hash(db) == before


@pytest.mark.parametrize("expression", ["", "2 ** 10", "__import__('os')", "1 / 0", "2 +", "abs(-1)"])
def test_calculate_refuses_anything_but_arithmetic(expression):
    obs = _refused(generate_db(0), "calculate", expression=expression)
    assert "expression" in obs or "division by zero" in obs
