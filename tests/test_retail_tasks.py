"""Retail database generation and the procedural task sets."""

from __future__ import annotations

import json

from lightning_asym.envs.retail import RetailEnv, db_hash, generate_db, gold_db, make_task
from lightning_asym.envs.retail.tools import WRITE_TOOLS
from lightning_asym.types import Task, from_dict, to_dict


def test_generation_is_deterministic_and_seeds_differ():
    # (speed is not asserted here: the house measures performance in tools/bench_*.py only)
    assert generate_db(3) == generate_db(3)
    assert db_hash(generate_db(3)) == db_hash(generate_db(3))
    assert len({db_hash(generate_db(s)) for s in range(50)}) == 50


def test_database_shape():
    db = generate_db(11)
    statuses = {o["status"] for o in db["orders"].values()}
    assert statuses <= {"pending", "processed", "delivered", "cancelled"}
    sources = {p["source"] for u in db["users"].values() for p in u["payment_methods"].values()}
    assert sources == {"credit_card", "paypal", "gift_card"}
    assert len({u["email"] for u in db["users"].values()}) == len(db["users"])
    keys = {
        (u["name"]["first_name"], u["name"]["last_name"], u["address"]["zip"]) for u in db["users"].values()
    }
    assert len(keys) == len(db["users"]), "name + zip must identify a user"
    for uid, u in db["users"].items():
        for oid in u["orders"]:
            order = db["orders"][oid]
            assert order["user_id"] == uid
            assert order["payment_history"][0]["payment_method_id"] in u["payment_methods"]
            for it in order["items"]:
                variant = db["products"][it["product_id"]]["variants"][it["item_id"]]
                assert variant["options"] == it["options"] and variant["price"] == it["price"]
    for p in db["products"].values():
        for v in p["variants"].values():
            assert isinstance(v["available"], bool) and v["price"] > 0 and v["options"]


def test_task_sets():
    env = RetailEnv()
    train, val, test = env.tasks("train"), env.tasks("validation"), env.tasks("test")
    assert len(train) >= 500 and len(test) >= 100 and len(val) >= 50
    seeds = [{t.data["db_seed"] for t in split} for split in (train, val, test)]
    assert not (seeds[0] & seeds[1] or seeds[0] & seeds[2] or seeds[1] & seeds[2]), "splits share a database"
    writes = [sum(a.name in WRITE_TOOLS for a in t.gold_actions) for t in train]
    assert min(writes) == 1 and max(writes) == 5
    assert len(set(writes)) == 5
    assert sum(bool(t.required_outputs) for t in train) > 100
    kinds = {it["kind"] for t in train for it in t.data["intents"]}
    assert kinds >= {
        "cancel",
        "modify_items",
        "modify_address",
        "modify_payment",
        "return",
        "exchange",
        "user_address",
        "order_total",
        "available_count",
        "refuse",
        "transfer",
    }
    assert any(it["search"] for t in train for it in t.data["intents"]), "some tasks need lookups"
    assert {t.data["auth"] for t in train} == {"email", "name_zip"}


def test_tasks_are_deterministic_small_and_serializable():
    a, b = make_task("test", 5), make_task("test", 5)
    assert to_dict(a) == to_dict(b)
    assert to_dict(make_task("test", 5, seed=1)) != to_dict(a)
    for t in RetailEnv().tasks("test")[:40]:
        assert len(json.dumps(t.data)) < 20_000, "task data must not embed the database"
        assert from_dict(Task, json.loads(json.dumps(to_dict(t)))) == t
        assert t.instruction and "###STOP###" in t.instruction
        for a in t.gold_actions:
            assert f"{a.name}(" in t.privileged
        for o in t.required_outputs:
            assert o in t.privileged and "," not in o


def test_gold_actions_replay_cleanly():
    for t in RetailEnv().tasks("validation"):
        db = gold_db(t)  # raises if a gold action is refused
        assert db_hash(db) != db_hash(generate_db(t.data["db_seed"]))
