"""Every retail tool's effect on the database, and each state guard."""

from __future__ import annotations

import json

import pytest

from lightning_asym.envs.retail import TOOL_SCHEMAS, TOOLS, WRITE_TOOLS, db_hash, generate_db, run_tool

EXPECTED = {
    "calculate",
    "find_user_id_by_email",
    "find_user_id_by_name_zip",
    "get_user_details",
    "get_order_details",
    "get_product_details",
    "list_all_product_types",
    "cancel_pending_order",
    "modify_pending_order_items",
    "modify_pending_order_address",
    "modify_pending_order_payment",
    "return_delivered_order_items",
    "exchange_delivered_order_items",
    "modify_user_address",
    "transfer_to_human_agents",
    "think",
}
ADDR = {
    "address1": "1 Test Road",
    "address2": "",
    "city": "Austin",
    "state": "TX",
    "country": "USA",
    "zip": "78701",
}


def _order(db, status, pred=lambda db, o: True):
    for o in db["orders"].values():
        if o["status"] == status and pred(db, o):
            return o
    raise LookupError(status)


def _swap(db, order, available=True):
    """(old item id, another variant id of the same product) with the wanted availability."""
    for it in order["items"]:
        for v in db["products"][it["product_id"]]["variants"].values():
            if v["item_id"] != it["item_id"] and v["available"] == available:
                return it["item_id"], v["item_id"]
    return None


def _pm(db, order, source, exclude=None):
    user = db["users"][order["user_id"]]
    for p in user["payment_methods"].values():
        if p["source"] == source and p["id"] != exclude:
            return p
    return None


def _ok(db, name, **kw):
    obs, ok = run_tool(db, name, kw)
    assert ok, obs
    return obs


def _refused(db, name, **kw):
    before = db_hash(db)
    obs, ok = run_tool(db, name, kw)
    assert not ok and obs.startswith("Error: "), obs
    assert db_hash(db) == before, "a refused call must not change the database"
    return obs


@pytest.fixture
def db():
    return generate_db(7)


def test_registry_and_schemas():
    assert set(TOOLS) == EXPECTED
    assert WRITE_TOOLS == {n for n in EXPECTED if n.startswith(("cancel", "modify", "return", "exchange"))}
    for s in TOOL_SCHEMAS:
        fn = s["function"]
        assert s["type"] == "function" and fn["parameters"]["type"] == "object"
        assert set(fn["parameters"]["required"]) == set(fn["parameters"]["properties"])
        json.dumps(s)


def test_reads(db):
    user = next(iter(db["users"].values()))
    assert _ok(db, "find_user_id_by_email", email=user["email"].upper()) == user["user_id"]
    name, zip_ = user["name"], user["address"]["zip"]
    uid = _ok(
        db, "find_user_id_by_name_zip", first_name=name["first_name"], last_name=name["last_name"], zip=zip_
    )
    assert uid == user["user_id"]
    _refused(db, "find_user_id_by_email", email="nobody@example.com")
    _refused(db, "find_user_id_by_name_zip", first_name="No", last_name="Body", zip="00000")
    assert json.loads(_ok(db, "get_user_details", user_id=uid)) == user
    oid = user["orders"][0]
    assert json.loads(_ok(db, "get_order_details", order_id=oid)) == db["orders"][oid]
    assert json.loads(_ok(db, "get_order_details", order_id=oid.lstrip("#")))["order_id"] == oid
    types = json.loads(_ok(db, "list_all_product_types"))
    assert len(types) == len(db["products"])
    pid = types["T-Shirt"]
    assert json.loads(_ok(db, "get_product_details", product_id=pid))["name"] == "T-Shirt"
    _refused(db, "get_product_details", product_id="123")
    _refused(db, "get_order_details", order_id="#W0000000")
    _refused(db, "get_user_details", user_id="nobody")
    assert _ok(db, "think", thought="hmm") == ""
    assert _ok(db, "transfer_to_human_agents", summary="x") == "Transfer successful"


def test_cancel_pending_order(db):
    order = _order(db, "pending", lambda db, o: _pm(db, o, "gift_card") is not None)
    # pay it with a gift card to check the immediate refund
    gc = _pm(db, order, "gift_card")
    order["payment_history"][0]["payment_method_id"] = gc["id"]
    balance, paid = gc["balance"], order["payment_history"][0]["amount"]
    _refused(db, "cancel_pending_order", order_id=order["order_id"], reason="changed my mind")
    out = json.loads(_ok(db, "cancel_pending_order", order_id=order["order_id"], reason="no longer needed"))
    assert out["status"] == "cancelled" == order["status"] and order["cancel_reason"] == "no longer needed"
    assert order["payment_history"][-1] == {
        "transaction_type": "refund",
        "amount": paid,
        "payment_method_id": gc["id"],
    }
    assert gc["balance"] == pytest.approx(balance + paid)
    _refused(db, "cancel_pending_order", order_id=order["order_id"], reason="no longer needed")
    for status in ("processed", "delivered"):
        _refused(
            db, "cancel_pending_order", order_id=_order(db, status)["order_id"], reason="ordered by mistake"
        )


def test_modify_pending_order_items(db):
    order = _order(db, "pending", lambda db, o: _swap(db, o) is not None)
    old, new = _swap(db, order)
    pm = db["users"][order["user_id"]]["payment_methods"][order["payment_history"][0]["payment_method_id"]]
    if pm["source"] == "gift_card":
        pm["balance"] = 10_000.0
    oid = order["order_id"]
    held = sum(i["item_id"] == old for i in order["items"])
    _refused(  # an id listed more often than the order holds the item
        db,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[old] * (held + 1),
        new_item_ids=[new] * (held + 1),
        payment_method_id=pm["id"],
    )
    _refused(
        db,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[],
        payment_method_id=pm["id"],
    )
    other = next(
        i
        for p in db["products"].values()
        for i in p["variants"]
        if p["product_id"] != new
        and i != new
        and db["products"][p["product_id"]]["name"]
        != next(x["name"] for x in order["items"] if x["item_id"] == old)
    )
    _refused(
        db,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[other],
        payment_method_id=pm["id"],
    )
    unavailable = _swap(db, order, available=False)
    if unavailable:
        _refused(
            db,
            "modify_pending_order_items",
            order_id=oid,
            item_ids=[unavailable[0]],
            new_item_ids=[unavailable[1]],
            payment_method_id=pm["id"],
        )
    old_price = next(i["price"] for i in order["items"] if i["item_id"] == old)
    new_variant = next(p["variants"][new] for p in db["products"].values() if new in p["variants"])
    n_hist = len(order["payment_history"])
    _ok(
        db,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[new],
        payment_method_id=pm["id"],
    )
    item = next(i for i in order["items"] if i["item_id"] == new)
    assert item["price"] == new_variant["price"] and item["options"] == new_variant["options"]
    assert order["status"] == "pending (item modified)"  # τ-bench's string
    diff = new_variant["price"] - old_price  # unrounded, and recorded even when zero, as τ-bench does
    kind = "payment" if diff > 0 else "refund"
    assert order["payment_history"][n_hist:] == [
        {"transaction_type": kind, "amount": abs(diff), "payment_method_id": pm["id"]}
    ]
    # items can be modified only once, and then the order takes no other change (as in τ-bench)
    _refused(
        db,
        "modify_pending_order_items",
        order_id=oid,
        item_ids=[new],
        new_item_ids=[old],
        payment_method_id=pm["id"],
    )
    _refused(db, "modify_pending_order_address", order_id=oid, **ADDR)
    _refused(db, "cancel_pending_order", order_id=oid, reason="no longer needed")


def test_modify_pending_order_address(db):
    order = _order(db, "pending")
    _ok(db, "modify_pending_order_address", order_id=order["order_id"], **ADDR)
    assert order["address"] == ADDR
    _refused(db, "modify_pending_order_address", order_id=_order(db, "delivered")["order_id"], **ADDR)
    _refused(db, "modify_pending_order_address", order_id=order["order_id"], **{**ADDR, "zip": None})
    _refused(db, "modify_pending_order_address", order_id=order["order_id"], address1="x")


def test_modify_pending_order_payment():
    for seed in range(50):
        db = generate_db(seed)
        try:
            order = _order(
                db,
                "pending",
                lambda db, o: (
                    _pm(db, o, "gift_card") is not None
                    and any(
                        p["source"] != "gift_card" and p["id"] != o["payment_history"][0]["payment_method_id"]
                        for p in db["users"][o["user_id"]]["payment_methods"].values()
                    )
                ),
            )
            break
        except LookupError:
            continue
    oid, current = order["order_id"], order["payment_history"][0]["payment_method_id"]
    total = order["payment_history"][0]["amount"]
    _refused(db, "modify_pending_order_payment", order_id=oid, payment_method_id=current)
    _refused(db, "modify_pending_order_payment", order_id=oid, payment_method_id="paypal_0000000")
    gc = _pm(db, order, "gift_card", exclude=current)
    if gc is not None:
        gc["balance"] = total - 1
        _refused(db, "modify_pending_order_payment", order_id=oid, payment_method_id=gc["id"])
    new = next(
        p
        for p in db["users"][order["user_id"]]["payment_methods"].values()
        if p["source"] != "gift_card" and p["id"] != current
    )
    _ok(db, "modify_pending_order_payment", order_id=oid, payment_method_id=new["id"])
    assert order["payment_history"][-2:] == [
        {"transaction_type": "payment", "amount": total, "payment_method_id": new["id"]},
        {"transaction_type": "refund", "amount": total, "payment_method_id": current},
    ]
    # now two payments: a second change is refused
    _refused(db, "modify_pending_order_payment", order_id=oid, payment_method_id=current)


def test_return_delivered_order_items(db):
    order = _order(db, "delivered", lambda db, o: len(o["items"]) >= 2)
    oid, original = order["order_id"], order["payment_history"][0]["payment_method_id"]
    ids = [order["items"][1]["item_id"], order["items"][0]["item_id"]]
    _refused(
        db,
        "return_delivered_order_items",
        order_id=_order(db, "pending")["order_id"],
        item_ids=ids[:1],
        payment_method_id=original,
    )
    _refused(
        db, "return_delivered_order_items", order_id=oid, item_ids=["0000000000"], payment_method_id=original
    )
    _refused(
        db,
        "return_delivered_order_items",
        order_id=oid,
        item_ids=[ids[0], ids[0]],
        payment_method_id=original,
    )
    _refused(db, "return_delivered_order_items", order_id=oid, item_ids=[], payment_method_id=original)
    other = [
        p
        for p in db["users"][order["user_id"]]["payment_methods"].values()
        if p["id"] != original and p["source"] != "gift_card"
    ]
    if other:
        _refused(
            db, "return_delivered_order_items", order_id=oid, item_ids=ids, payment_method_id=other[0]["id"]
        )
    _ok(db, "return_delivered_order_items", order_id=oid, item_ids=ids, payment_method_id=original)
    assert order["status"] == "return requested"
    assert order["return_items"] == sorted(ids) and order["return_payment_method_id"] == original
    # only once, and a returned order cannot be exchanged either
    _refused(db, "return_delivered_order_items", order_id=oid, item_ids=ids[:1], payment_method_id=original)


def test_return_to_gift_card():
    for seed in range(50):
        db = generate_db(seed)
        try:
            order = _order(db, "delivered", lambda db, o: _pm(db, o, "gift_card") is not None)
            break
        except LookupError:
            continue
    gc = _pm(db, order, "gift_card")
    ids = [order["items"][0]["item_id"]]
    _ok(
        db,
        "return_delivered_order_items",
        order_id=order["order_id"],
        item_ids=ids,
        payment_method_id=gc["id"],
    )
    assert order["return_payment_method_id"] == gc["id"]


def test_exchange_delivered_order_items(db):
    order = _order(db, "delivered", lambda db, o: _swap(db, o) is not None)
    oid = order["order_id"]
    old, new = _swap(db, order)
    user = db["users"][order["user_id"]]
    pm = (
        next(p for p in user["payment_methods"].values() if p["source"] != "gift_card")
        if any(p["source"] != "gift_card" for p in user["payment_methods"].values())
        else None
    )
    if pm is None:
        pm = next(iter(user["payment_methods"].values()))
        pm["balance"] = 10_000.0
    _refused(
        db,
        "exchange_delivered_order_items",
        order_id=_order(db, "pending")["order_id"],
        item_ids=[old],
        new_item_ids=[new],
        payment_method_id=pm["id"],
    )
    _refused(
        db,
        "exchange_delivered_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[new, new],
        payment_method_id=pm["id"],
    )
    _ok(
        db,
        "exchange_delivered_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[new],
        payment_method_id=pm["id"],
    )
    assert order["status"] == "exchange requested"
    assert order["exchange_items"] == [old] and order["exchange_new_items"] == [new]
    assert order["exchange_payment_method_id"] == pm["id"]
    _refused(
        db,
        "exchange_delivered_order_items",
        order_id=oid,
        item_ids=[old],
        new_item_ids=[new],
        payment_method_id=pm["id"],
    )
    _refused(db, "return_delivered_order_items", order_id=oid, item_ids=[old], payment_method_id=pm["id"])


def test_exchange_gift_card_must_cover_difference():
    for seed in range(200):
        db = generate_db(seed)
        for order in db["orders"].values():
            if order["status"] != "delivered":
                continue
            gc = _pm(db, order, "gift_card")
            for it in order["items"]:
                for v in db["products"][it["product_id"]]["variants"].values():
                    if v["available"] and v["price"] > it["price"] and gc is not None:
                        gc["balance"] = 0.0
                        _refused(
                            db,
                            "exchange_delivered_order_items",
                            order_id=order["order_id"],
                            item_ids=[it["item_id"]],
                            new_item_ids=[v["item_id"]],
                            payment_method_id=gc["id"],
                        )
                        return
    pytest.fail("no fixture found")


def test_modify_user_address(db):
    uid = next(iter(db["users"]))
    _ok(db, "modify_user_address", user_id=uid, **ADDR)
    assert db["users"][uid]["address"] == ADDR
    _refused(db, "modify_user_address", user_id="nobody", **ADDR)


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("no_such_tool", {}),
        ("get_order_details", {}),
        ("get_order_details", {"order_id": "#W1", "extra": 1}),
        ("get_order_details", {"order_id": None}),
        ("get_order_details", {"order_id": ["#W1"]}),
        ("get_order_details", "not a dict"),
        ("get_order_details", None),
        ("cancel_pending_order", {"order_id": {"a": 1}, "reason": "no longer needed"}),
        ("return_delivered_order_items", {"order_id": "#W1", "item_ids": "123", "payment_method_id": "x"}),
        ("return_delivered_order_items", {"order_id": "#W1", "item_ids": [None], "payment_method_id": "x"}),
        ("modify_user_address", {"user_id": True, **ADDR}),
        ("", {}),
    ],
)
def test_garbage_calls_are_errors(db, name, kwargs):
    before = db_hash(db)
    obs, ok = run_tool(db, name, kwargs)
    assert not ok and obs.startswith("Error: ")
    assert db_hash(db) == before


def test_numeric_ids_are_coerced(db):
    order = _order(db, "delivered")
    obs, ok = run_tool(db, "get_order_details", {"order_id": order["order_id"]})
    assert ok
    item = order["items"][0]
    pid = int(item["product_id"])
    assert json.loads(_ok(db, "get_product_details", product_id=pid))["product_id"] == item["product_id"]
