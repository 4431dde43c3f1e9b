"""The preferences domain's vocabulary: aspects, their attributes and values, and topic words.

Attribute values are short literal strings (what `search` shows); a preference is one
`attribute = value` constraint. Only values with hint templates (see `hints.py`) can be
preferred; the others exist so that catalogues have plausible wrong options.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class AspectSpec:
    """One aspect (flight, hotel...): its attributes, price range and topic words."""

    name: str
    prefix: str
    attributes: dict[str, tuple[str, ...]]
    price_range: tuple[int, int, int]
    """(low, high, step) of the option prices, in dollars."""
    price_unit: str
    keywords: tuple[str, ...]
    """Words (whole-word, case-insensitive, optional plural s) that put an agent reply on this topic."""


ASPECTS: dict[str, AspectSpec] = {
    a.name: a
    for a in [
        AspectSpec(
            "flight",
            "F",
            {
                "airline": ("SkyWays", "AeroJet", "BlueFin", "NorthStar"),
                "stops": ("nonstop", "1 stop", "2 stops"),
                "departure": ("early morning", "afternoon", "evening", "red-eye"),
                "cabin": ("economy", "premium economy", "business"),
                "baggage": ("carry-on only", "checked bag"),
            },
            (90, 900, 5),
            "per ticket",
            ("flight", "fly", "flying", "airline", "plane", "airfare", "layover"),
        ),
        AspectSpec(
            "hotel",
            "H",
            {
                "area": ("downtown", "beach", "airport", "old town"),
                "stars": ("2 stars", "3 stars", "4 stars", "5 stars"),
                "breakfast": ("breakfast included", "room only"),
                "pets": ("pets allowed", "no pets"),
                "pool": ("pool", "no pool"),
            },
            (60, 480, 5),
            "per night",
            ("hotel", "accommodation", "lodging", "inn", "resort"),
        ),
        AspectSpec(
            "restaurant",
            "R",
            {
                "cuisine": ("Italian", "Japanese", "Mexican", "Indian", "French"),
                "diet": ("vegan", "gluten-free", "no restrictions"),
                "ambiance": ("quiet", "lively", "romantic"),
                "seating": ("outdoor", "indoor"),
            },
            (15, 140, 1),
            "per person",
            ("restaurant", "dinner", "lunch", "dining", "eat", "food", "cuisine", "meal"),
        ),
        AspectSpec(
            "car",
            "C",
            {
                "type": ("compact", "SUV", "convertible", "minivan"),
                "transmission": ("automatic", "manual"),
                "fuel": ("electric", "hybrid", "gasoline"),
                "child seat": ("child seat", "no child seat"),
            },
            (25, 180, 1),
            "per day",
            ("car", "rental car", "vehicle", "drive", "driving"),
        ),
        AspectSpec(
            "apartment",
            "A",
            {
                "bedrooms": ("studio", "1 bedroom", "2 bedrooms", "3 bedrooms"),
                "neighborhood": ("residential", "nightlife", "university"),
                "floor": ("ground floor", "high floor"),
                "kitchen": ("full kitchen", "kitchenette"),
                "laundry": ("in-unit laundry", "shared laundry"),
            },
            (900, 4000, 25),
            "per month",
            ("apartment", "flat", "housing", "lease"),
        ),
    ]
}
ASPECT_NAMES: tuple[str, ...] = tuple(ASPECTS)

_TOPIC_RES: dict[str, re.Pattern[str]] = {
    name: re.compile(r"\b(?:" + "|".join(re.escape(k) for k in spec.keywords) + r")s?\b", re.IGNORECASE)
    for name, spec in ASPECTS.items()
}


def detect_aspects(text: str, among: tuple[str, ...] | list[str] | None = None) -> list[str]:
    """The aspects a text talks about, in order of first mention (keyword/synonym matching)."""
    found: list[tuple[int, str]] = []
    for name in among if among is not None else ASPECT_NAMES:
        pat = _TOPIC_RES.get(name)
        m = pat.search(text) if pat is not None else None
        if m is not None:
            found.append((m.start(), name))
    return [name for _, name in sorted(found)]


def matches(option: dict, prefs: dict[str, str]) -> bool:
    """Whether an option satisfies every `attribute = value` preference."""
    return all(option.get(attr) == value for attr, value in prefs.items())


def classify(options: list[dict], prefs: dict[str, str], option_id: str | None) -> str:
    """`"best"` (cheapest option satisfying all preferences), `"acceptable"` (satisfies them
    but is not best), `"wrong"` (violates one) or `"missing"` (no such option)."""
    chosen = next((o for o in options if o["id"] == option_id), None)
    if chosen is None:
        return "missing"
    if not matches(chosen, prefs):
        return "wrong"
    cheapest = min((o for o in options if matches(o, prefs)), key=lambda o: o["price"])
    return "best" if cheapest["id"] == chosen["id"] else "acceptable"


SCORES: dict[str, float] = {"best": 1.0, "acceptable": 0.8, "wrong": 0.0, "missing": 0.0}
