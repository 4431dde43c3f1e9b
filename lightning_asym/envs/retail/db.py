"""Procedural retail database: users, a product catalog with variants, and orders.

`generate_db(seed)` is deterministic and fast (about a millisecond), so a task stores only
its seed and every episode (and every gold replay) starts from a fresh database. The layout
is plain JSON: ``{"users": {...}, "products": {...}, "orders": {...}}``.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import random
from typing import Any

DB = dict[str, Any]

FIRST_NAMES = (
    "Ava Liam Olivia Noah Emma Mason Sofia Lucas Mia Ethan Aisha Omar Yuki Chen Priya Raj Elena Mateo Fatima "
    "Ivan Nora Hugo Lena Amir Grace Leo Chloe Daniel Isabel James"
).split()
LAST_NAMES = (
    "Smith Garcia Kim Nguyen Patel Johnson Brown Lopez Silva Ito Khan Muller Rossi Novak Cohen Ahmed Wang Lee "
    "Martin Davis Moreau Santos Berg Ortiz Walker"
).split()
# (city, state, first three digits of its zip codes)
CITIES = [
    tuple(c.replace("_", " ").split(":"))
    for c in (
        "Austin:TX:787 Denver:CO:802 Seattle:WA:981 Boston:MA:021 Phoenix:AZ:850 Chicago:IL:606 "
        "Portland:OR:972 Atlanta:GA:303 Columbus:OH:432 San_Diego:CA:921 Nashville:TN:372 Madison:WI:537"
    ).split()
]
STREETS = (
    "Oak Street,Maple Avenue,Pine Road,Cedar Lane,Elm Drive,Hill Street,Lake Road,Park Avenue,River Lane,"
    "Sunset Boulevard,Main Street,Willow Way"
).split(",")
CARD_BRANDS = ["visa", "mastercard", "amex"]

# (product name, base price, {option name: values}); the catalog is the same for every seed.
PRODUCT_TYPES: list[tuple[str, float, dict[str, list[str]]]] = [
    ("T-Shirt", 25.0, {"color": ["red", "blue", "black", "white", "green"], "size": ["S", "M", "L", "XL"]}),
    ("Running Shoes", 95.0, {"color": ["black", "white", "red"], "size": ["8", "9", "10", "11"]}),
    ("Backpack", 70.0, {"color": ["black", "navy", "grey"], "capacity": ["20L", "30L", "40L"]}),
    (
        "Water Bottle",
        20.0,
        {"capacity": ["500ml", "750ml", "1000ml"], "material": ["steel", "plastic", "glass"]},
    ),
    ("Desk Lamp", 45.0, {"color": ["black", "white", "silver"], "brightness": ["low", "medium", "high"]}),
    (
        "Wireless Earbuds",
        120.0,
        {"color": ["black", "white", "blue"], "battery life": ["6 hours", "8 hours"]},
    ),
    ("Office Chair", 220.0, {"material": ["mesh", "leather", "fabric"], "color": ["black", "grey", "blue"]}),
    (
        "Laptop Sleeve",
        35.0,
        {"screen size": ["13 inch", "15 inch", "17 inch"], "color": ["black", "brown", "grey"]},
    ),
    (
        "Coffee Maker",
        85.0,
        {"capacity": ["4 cups", "8 cups", "12 cups"], "color": ["black", "silver", "red"]},
    ),
    ("Yoga Mat", 40.0, {"thickness": ["4mm", "6mm", "8mm"], "color": ["purple", "green", "black"]}),
    ("Jacket", 150.0, {"size": ["S", "M", "L", "XL"], "color": ["black", "olive", "navy"]}),
    ("Smart Watch", 250.0, {"strap": ["silicone", "leather", "metal"], "case size": ["40mm", "44mm"]}),
]

ORDER_STATUSES = ("pending", "processed", "delivered", "cancelled")
_STATUS_WEIGHTS = (0.38, 0.14, 0.38, 0.10)


@functools.lru_cache(maxsize=1)
def catalog() -> list[dict[str, Any]]:
    """The fixed product catalog (ids, options, prices); availability is drawn per seed."""
    rng = random.Random("retail-catalog-v1")
    products = []
    for name, base, options in PRODUCT_TYPES:
        combos = list(itertools.product(*options.values()))
        rng.shuffle(combos)
        variants = []
        for combo in combos[: rng.randint(6, 9)]:
            variants.append(
                {
                    "item_id": str(rng.randint(10**9, 10**10 - 1)),
                    "options": dict(zip(options, combo)),
                    "price": round(base * rng.uniform(0.8, 1.25), 2),
                }
            )
        products.append(
            {"name": name, "product_id": str(rng.randint(10**9, 10**10 - 1)), "variants": variants}
        )
    return products


def _address(rng: random.Random) -> dict[str, str]:
    city, state, zip3 = rng.choice(CITIES)
    return {
        "address1": f"{rng.randint(10, 9999)} {rng.choice(STREETS)}",
        "address2": f"Suite {rng.randint(100, 999)}" if rng.random() < 0.4 else "",
        "city": city,
        "state": state,
        "country": "USA",
        "zip": f"{zip3}{rng.randint(0, 99):02d}",
    }


def _payment_methods(rng: random.Random) -> dict[str, dict[str, Any]]:
    kinds = rng.sample(["credit_card", "paypal", "gift_card"], rng.randint(1, 3))
    if rng.random() < 0.25:  # some users hold two cards, so "the credit card" is ambiguous
        kinds.append("credit_card")
    out: dict[str, dict[str, Any]] = {}
    for kind in kinds:
        pm_id = f"{kind}_{rng.randint(10**6, 10**7 - 1)}"
        pm: dict[str, Any] = {"source": kind, "id": pm_id}
        if kind == "credit_card":
            pm.update(brand=rng.choice(CARD_BRANDS), last_four=f"{rng.randint(0, 9999):04d}")
        elif kind == "gift_card":
            pm["balance"] = float(rng.randint(0, 300))
        out[pm_id] = pm
    return out


def generate_db(seed: int, num_users: int = 10) -> DB:
    """A fresh database for `seed`; identical seeds give identical databases."""
    rng = random.Random(seed)
    products: dict[str, Any] = {}
    for p in catalog():
        variants = {
            v["item_id"]: {
                "item_id": v["item_id"],
                "options": dict(v["options"]),
                "price": v["price"],
                "available": rng.random() < 0.7,
            }
            for v in p["variants"]
        }
        products[p["product_id"]] = {"name": p["name"], "product_id": p["product_id"], "variants": variants}
    # (product, its variants) pairs built once: orders draw from them many times
    product_list = [(p, list(p["variants"].values())) for p in products.values()]

    users: dict[str, Any] = {}
    orders: dict[str, Any] = {}
    seen_name_zip: set[tuple[str, str, str]] = set()
    while len(users) < num_users:
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        address = _address(rng)
        if (first, last, address["zip"]) in seen_name_zip:
            continue  # name + zip must identify one user
        seen_name_zip.add((first, last, address["zip"]))
        user_id = f"{first}_{last}_{rng.randint(1000, 9999)}".lower()
        if user_id in users:
            continue
        pms = _payment_methods(rng)
        user = {
            "user_id": user_id,
            "name": {"first_name": first, "last_name": last},
            "email": f"{first}.{last}{rng.randint(10, 99)}@example.com".lower(),
            "address": address,
            "payment_methods": pms,
            "orders": [],
        }
        for _ in range(rng.randint(2, 6)):
            order = _order(rng, user, product_list, orders)
            orders[order["order_id"]] = order
            user["orders"].append(order["order_id"])
        users[user_id] = user
    return {"users": users, "products": products, "orders": orders}


def _order(
    rng: random.Random,
    user: dict[str, Any],
    product_list: list[tuple[dict, list[dict]]],
    orders: dict[str, Any],
) -> dict[str, Any]:
    while True:
        order_id = f"#W{rng.randint(10**6, 10**7 - 1)}"
        if order_id not in orders:
            break
    items = []
    used: set[str] = set()
    for _ in range(rng.randint(1, 4)):
        p, variants = rng.choice(product_list)
        v = rng.choice(variants)
        if v["item_id"] in used:
            continue  # an item id appears at most once per order, so item ids name items unambiguously
        used.add(v["item_id"])
        items.append(
            {
                "name": p["name"],
                "product_id": p["product_id"],
                "item_id": v["item_id"],
                "price": v["price"],
                "options": dict(v["options"]),
            }
        )
    status = rng.choices(ORDER_STATUSES, _STATUS_WEIGHTS)[0]
    total = round(sum(i["price"] for i in items), 2)
    pm_id = rng.choice(sorted(user["payment_methods"]))
    history = [{"transaction_type": "payment", "amount": total, "payment_method_id": pm_id}]
    if status == "cancelled":
        history.append({"transaction_type": "refund", "amount": total, "payment_method_id": pm_id})
    address = dict(user["address"]) if rng.random() < 0.85 else _address(rng)
    return {
        "order_id": order_id,
        "user_id": user["user_id"],
        "address": address,
        "items": items,
        "status": status,
        "payment_history": history,
    }


def db_hash(db: DB) -> str:
    """A stable hash of the database state, as tau-bench compares final states.

    The catalog is left out because no tool writes it and it is a function of the seed, so
    two databases of one task agree on it; skipping it halves the cost of every comparison.
    """
    state = {"users": db["users"], "orders": _amounts_in_cents(db["orders"])}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def _amounts_in_cents(orders: dict[str, Any]) -> dict[str, Any]:
    """`orders` with payment amounts rounded to cents, copying only the orders that need it.

    A price difference is recorded unrounded, as τ-bench records it (`ops._price_difference`),
    and a sum of three or more floats depends on the order of its terms; compared in cents, the
    order in which an agent lists the items cannot change the reward.
    """
    out = orders
    for oid, order in orders.items():
        history = order.get("payment_history") or []
        if any(p.get("amount") != round(p.get("amount") or 0.0, 2) for p in history):
            if out is orders:
                out = dict(orders)
            out[oid] = {**order, "payment_history": [{**p, "amount": round(p["amount"], 2)} for p in history]}
    return out


def order_total(order: dict[str, Any]) -> float:
    return round(sum(i["price"] for i in order["items"]), 2)


def describe_pm(pm: dict[str, Any]) -> str:
    """How people name a payment method: "gift card", "PayPal", "visa credit card ending in 1234"."""
    if pm["source"] == "credit_card":
        return f"{pm['brand']} credit card ending in {pm['last_four']}"
    return "PayPal account" if pm["source"] == "paypal" else "gift card"


def describe_item(item: dict[str, Any]) -> str:
    opts = ", ".join(f"{k} {v}" for k, v in item["options"].items())
    return f"{item['name']} ({opts})"
