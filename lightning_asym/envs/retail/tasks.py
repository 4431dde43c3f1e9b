"""Procedural retail tasks: a user with one to five writes, some questions, some out-of-scope asks.

A task stores only its database seed and the user's structured goal (`data["intents"]`), so
it is small and the database is rebuilt in about a millisecond. Each split draws from its own
seed range, so train, validation and test never share a database.
"""

from __future__ import annotations

import json
import random
from typing import Any

from lightning_asym.envs.base import SPLITS
from lightning_asym.envs.retail.db import DB, generate_db
from lightning_asym.envs.retail.intents import Intent, build_intent
from lightning_asym.envs.retail.tools import run_tool
from lightning_asym.types import Action, Task

NUM_WRITES_WEIGHTS = {1: 0.3, 2: 0.28, 3: 0.2, 4: 0.13, 5: 0.09}
WRITE_WEIGHTS = {
    "cancel": 0.2,
    "modify_items": 0.12,
    "modify_address": 0.12,
    "modify_payment": 0.1,
    "return": 0.22,
    "exchange": 0.16,
    "user_address": 0.08,
}


def db_seed_for(seed: int, split: str, index: int, attempt: int) -> int:
    """Disjoint seed ranges per env seed, split and task."""
    return ((seed * len(SPLITS) + SPLITS.index(split)) * 1_000_000 + index) * 64 + attempt


def copy_db(db: DB) -> DB:
    """An independent copy of the mutable part; the catalog is shared since no tool writes it."""
    # a JSON round trip is faster than deepcopy for this plain-JSON structure
    return {
        "products": db["products"],
        **json.loads(json.dumps({"users": db["users"], "orders": db["orders"]})),
    }


def _user_copy(db: DB, uid: str) -> DB:
    """A database whose one user (and their orders) may be mutated without touching `db`."""
    mine = json.loads(
        json.dumps(
            {"user": db["users"][uid], "orders": {o: db["orders"][o] for o in db["users"][uid]["orders"]}}
        )
    )
    return {
        "products": db["products"],
        "users": {**db["users"], uid: mine["user"]},
        "orders": {**db["orders"], **mine["orders"]},
    }


def _plan(rng: random.Random, db: DB) -> tuple[str, list[Intent]] | None:
    """A user and their intents whose gold writes all succeed in order, or None."""
    n_writes = rng.choices(list(NUM_WRITES_WEIGHTS), list(NUM_WRITES_WEIGHTS.values()))[0]
    users = sorted(db["users"])
    rng.shuffle(users)
    for uid in users[:4]:
        work = _user_copy(db, uid)
        user = work["users"][uid]
        used: set[str] = set()
        intents: list[Intent] = []
        for _ in range(20):
            if len(intents) == n_writes:
                break
            kinds = [k for k in WRITE_WEIGHTS if k != "user_address" or all(i["kind"] != k for i in intents)]
            kind = rng.choices(kinds, [WRITE_WEIGHTS[k] for k in kinds])[0]
            it = build_intent(kind, rng, work, user, used)
            if it is None:
                continue
            _, ok = run_tool(work, it["action"]["name"], it["action"]["kwargs"])
            if ok:
                intents.append(it)
        if len(intents) < n_writes:
            continue
        # questions and refusals touch orders no write touches, so their position is free
        for kind, p in (("order_total", 0.15), ("available_count", 0.1), ("refuse", 0.08)):
            if rng.random() < p:
                it = build_intent(kind, rng, work, user, used)
                if it is not None:
                    intents.insert(rng.randint(0, len(intents)), it)
        if rng.random() < 0.1:
            it = build_intent("transfer", rng, work, user, used)
            if it is not None:
                intents.append(it)  # a transfer ends the episode, so it comes last
        return uid, intents
    return None


def instruction_text(data: dict[str, Any]) -> str:
    """The hidden instruction a (LLM) user simulator plays."""
    who = f"You are {data['first_name']} {data['last_name']}, zip code {data['zip']}, email {data['email']}."
    if data["auth"] == "name_zip":
        who += " You do not remember your email; identify yourself with your name and zip code."
    goals = "\n".join(f"{i + 1}. {it['details']}" for i, it in enumerate(data["intents"]))
    return (
        f"{who}\nYou contact customer service. Ask for one thing at a time, in this order, and give "
        f"details only when asked:\n{goals}\nSay yes only to an action that matches exactly what you want; "
        "otherwise say no and repeat what you want. When everything is done, end with ###STOP###."
    )


def make_task(split: str, index: int, seed: int = 0) -> Task:
    """Task `index` of `split`; deterministic given (seed, split, index)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    rng = random.Random(f"retail-task:{seed}:{split}:{index}")
    for attempt in range(64):
        db_seed = db_seed_for(seed, split, index, attempt)
        db = generate_db(db_seed)
        plan = _plan(rng, db)
        if plan is not None:
            break
    else:  # pragma: no cover - every seed range tried so far finds a plan within a few attempts
        raise RuntimeError(f"could not build retail task {split}/{index}")
    uid, intents = plan
    user = db["users"][uid]
    data = {
        "db_seed": db_seed,
        "user_id": uid,
        "auth": "email" if rng.random() < 0.6 else "name_zip",
        "email": user["email"],
        "first_name": user["name"]["first_name"],
        "last_name": user["name"]["last_name"],
        "zip": user["address"]["zip"],
        "intents": intents,
    }
    gold = [Action(it["action"]["name"], dict(it["action"]["kwargs"])) for it in intents if it["action"]]
    outputs = [o for it in intents for o in it["outputs"]]
    privileged = "\n".join(
        [
            f"User: {data['first_name']} {data['last_name']} ({uid}), identifies by "
            f"{'email' if data['auth'] == 'email' else 'name and zip code'}.",
            "Goal, in order:",
            *[f"- {it['summary']}" for it in intents],
            "Gold actions:",
            *[f"- {a.name}({json.dumps(a.kwargs, sort_keys=True)})" for a in gold],
            f"Required outputs: {', '.join(outputs) if outputs else 'none'}",
        ]
    )
    return Task(
        id=f"retail-{split}-{index:04d}",
        split=split,
        instruction=instruction_text(data),
        gold_actions=gold,
        required_outputs=outputs,
        privileged=privileged,
        data=data,
    )


def make_tasks(split: str, n: int, seed: int = 0) -> list[Task]:
    return [make_task(split, i, seed) for i in range(n)]
