"""Task generation: hidden preferences and catalogues with exactly one best option.

Each task is drawn from its own `random.Random` seeded by (seed, split, index), so splits
come from separate seed streams, any task can be rebuilt alone, and generation is
deterministic. A catalogue of one aspect holds one *best* option (satisfies every
preference, cheapest such), `num_acceptable` *acceptable* ones (satisfy them, pricier)
and *wrong* ones (violate at least one preference; some are cheaper than the best, so
"just take the cheapest" fails).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_asym.envs.preferences.domain import ASPECT_NAMES, ASPECTS
from lightning_asym.envs.preferences.hints import HINTS, preferable_attributes
from lightning_asym.envs.users import STOP
from lightning_asym.types import Action, Task


@dataclass(frozen=True)
class GenConfig:
    """The difficulty knobs of task generation."""

    num_aspects: int = 2
    prefs_per_aspect: int = 2
    num_options: int = 8
    num_acceptable: int = 2
    id_style: str = "random"
    """`random`: ids like H417, as a real catalogue has; `index`: H1..Hn in listed order (easier)."""
    aspect_pool: tuple[str, ...] = ASPECT_NAMES
    """The aspects tasks draw from (a single one makes the easiest setting)."""
    attribute_pool: tuple[str, ...] | None = None
    """The attributes preferences are drawn from, and the only ones `search` lists besides id and
    price (default: every attribute). Fewer attributes mean fewer distractors to read past."""

    layout: str = "shuffled"
    """`shuffled`: options in random order; `by_value` (the easiest setting): one option per value
    of the preferred attribute, listed in the domain's order of those values, so the right
    position depends only on what the hint means, not on reading the search results."""

    def attributes(self, aspect: str) -> list[str]:
        """The preferable attributes of `aspect` that tasks use."""
        found = preferable_attributes(aspect)
        return found if self.attribute_pool is None else [a for a in found if a in self.attribute_pool]

    def validate(self) -> None:
        unknown = set(self.aspect_pool) - set(ASPECT_NAMES)
        if unknown or not self.aspect_pool:
            raise ValueError(
                f"aspects must be a non-empty subset of {list(ASPECT_NAMES)}, got {list(self.aspect_pool)}"
            )
        if self.id_style not in ("random", "index"):
            raise ValueError(f"id_style must be 'random' or 'index', got {self.id_style!r}")
        if not 1 <= self.num_aspects <= len(self.aspect_pool):
            raise ValueError(
                f"num_aspects must be in 1..{len(self.aspect_pool)} (the aspects), got {self.num_aspects}"
            )
        if self.attribute_pool is not None:
            known = {attr for a in self.aspect_pool for attr in preferable_attributes(a)}
            unknown = sorted(set(self.attribute_pool) - known)
            if unknown or not self.attribute_pool:
                raise ValueError(
                    f"attributes must be a non-empty subset of the preferable attributes of "
                    f"{list(self.aspect_pool)}: {sorted(known)}; got {list(self.attribute_pool)}"
                )
        if self.layout not in ("shuffled", "by_value"):
            raise ValueError(f"layout must be 'shuffled' or 'by_value', got {self.layout!r}")
        if self.layout == "by_value":
            sizes = {
                f"{a}.{attr}": len(ASPECTS[a].attributes[attr])
                for a in self.aspect_pool
                for attr in self.attributes(a)
            }
            if (
                self.prefs_per_aspect != 1
                or self.num_acceptable != 0
                or set(sizes.values()) != {self.num_options}
            ):
                raise ValueError(
                    "layout 'by_value' lists one option per value of the preferred attribute: it needs "
                    f"prefs_per_aspect 1, num_acceptable 0 and num_options equal to the number of values "
                    f"of every attribute tasks use ({sizes}; choose them with `attributes`), got "
                    f"prefs_per_aspect {self.prefs_per_aspect}, num_acceptable {self.num_acceptable}, "
                    f"num_options {self.num_options}"
                )
        most = min(len(self.attributes(a)) for a in self.aspect_pool)
        if not 1 <= self.prefs_per_aspect <= most:
            short = min(self.aspect_pool, key=lambda a: len(self.attributes(a)))
            raise ValueError(
                f"prefs_per_aspect must be in 1..{most} (the attributes of {short!r} that tasks use), "
                f"got {self.prefs_per_aspect}"
            )
        if self.num_acceptable < 0:
            raise ValueError(f"num_acceptable must be >= 0, got {self.num_acceptable}")
        if not self.num_acceptable + 1 <= self.num_options <= 40:
            raise ValueError(
                f"num_options must be in {self.num_acceptable + 1}..40 (one best plus "
                f"num_acceptable={self.num_acceptable}), got {self.num_options}"
            )


def _distinct(rnd: Callable[[], float], n: int, k: int) -> list[int]:
    """`k` distinct ints in `range(n)`; rejection beats `Random.sample` for small k (speed)."""
    seen: set[int] = set()
    out = []
    while len(out) < k:
        x = int(rnd() * n)
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


def make_catalogue(
    rng: random.Random,
    aspect: str,
    prefs: dict[str, str],
    num_options: int,
    num_acceptable: int,
    id_style: str = "random",
    listed: list[str] | None = None,
    layout: str = "shuffled",
) -> tuple[list[dict[str, Any]], str, list[str]]:
    """Options of one aspect as `(options, best_id, acceptable_ids)`; options are shuffled.

    `listed`: the attributes options carry (default: all of the aspect's; it must hold `prefs`).
    `layout="by_value"` (one preference, no acceptable options, one option per value of the
    preferred attribute): options are ordered by that value instead of shuffled.
    """
    spec = ASPECTS[aspect]
    rnd = rng.random  # `rng.choice` is several times slower, and 5000 tasks must be quick
    lo, hi, step = spec.price_range
    prices = sorted(lo + step * i for i in _distinct(rnd, (hi - lo) // step + 1, num_options))
    # The best must be cheaper than every acceptable option; put at least one wrong option
    # below it when there is room, so price alone never finds the answer.
    top = num_options - 1 - num_acceptable
    first = min(1, top)
    best_rank = first + int(rnd() * (top - first + 1))
    above = prices[best_rank + 1 :]
    acceptable_prices = sorted(above[i] for i in _distinct(rnd, len(above), num_acceptable))
    taken = set(acceptable_prices)
    wrong_prices = [p for i, p in enumerate(prices) if i != best_rank and p not in taken]

    # (attribute, values, preferred value or None, the other values) once per catalogue.
    plan = [
        (a, vs, prefs.get(a), [v for v in vs if v != prefs.get(a)])
        for a, vs in spec.attributes.items()
        if listed is None or a in listed
    ]

    def draw(violate: tuple[str, ...]) -> dict[str, Any]:
        return {
            a: others[int(rnd() * len(others))]
            if a in violate
            else (want if want is not None else vs[int(rnd() * len(vs))])
            for a, vs, want, others in plan
        }

    pref_attrs = list(prefs)
    rows: list[tuple[str, dict[str, Any], int]] = [("best", draw(()), prices[best_rank])]
    rows += [("acceptable", draw(()), p) for p in acceptable_prices]
    n_pref = len(pref_attrs)
    for p in wrong_prices:
        # Mostly near misses (one violated preference): those are the hard decoys.
        if rnd() < 0.7:
            violate: tuple[str, ...] = (pref_attrs[int(rnd() * n_pref)],)
        else:
            violate = tuple(pref_attrs[i] for i in _distinct(rnd, n_pref, 1 + int(rnd() * n_pref)))
        rows.append(("wrong", draw(violate), p))
    if layout == "by_value":
        (attr,) = prefs
        values = spec.attributes[attr]
        others = iter(v for v in values if v != prefs[attr])
        for kind, attrs, _ in rows:
            attrs[attr] = prefs[attr] if kind == "best" else next(others)
        rows.sort(key=lambda row: values.index(row[1][attr]))
    else:
        rng.shuffle(rows)
    numbers = _distinct(rnd, 900, num_options)
    options, best_id, acceptable = [], "", []
    for k, ((kind, attrs, price), n) in enumerate(zip(rows, numbers)):
        oid = f"{spec.prefix}{100 + n}" if id_style == "random" else f"{spec.prefix}{k + 1}"
        options.append({"id": oid, **attrs, "price": price})
        if kind == "best":
            best_id = oid
        elif kind == "acceptable":
            acceptable.append(oid)
    return options, best_id, acceptable


def make_task(rng: random.Random, cfg: GenConfig, task_id: str, split: str) -> Task:
    """One task: aspects, hidden preferences and catalogues."""
    aspects = rng.sample(cfg.aspect_pool, cfg.num_aspects)
    preferences: dict[str, dict[str, str]] = {}
    catalogue: dict[str, list[dict[str, Any]]] = {}
    best: dict[str, str] = {}
    acceptable: dict[str, list[str]] = {}
    for aspect in aspects:
        attrs = rng.sample(cfg.attributes(aspect), cfg.prefs_per_aspect)
        prefs = {attr: rng.choice(list(HINTS[aspect][attr])) for attr in attrs}
        preferences[aspect] = prefs
        listed = None if cfg.attribute_pool is None else cfg.attributes(aspect)
        catalogue[aspect], best[aspect], acceptable[aspect] = make_catalogue(
            rng, aspect, prefs, cfg.num_options, cfg.num_acceptable, cfg.id_style, listed, cfg.layout
        )
    data = {
        "aspects": aspects,
        "preferences": preferences,
        "catalogue": catalogue,
        "best": best,
        "acceptable": acceptable,
    }
    gold = []
    for aspect in aspects:
        gold += [
            Action("search", {"aspect": aspect}),
            Action("recommend", {"aspect": aspect, "option_id": best[aspect]}),
        ]
    return Task(
        id=task_id,
        split=split,
        instruction=instruction_text(aspects, preferences),
        gold_actions=gold,
        required_outputs=[],
        privileged=privileged_text(data),
        data=data,
    )


def instruction_text(aspects: list[str], preferences: dict[str, dict[str, str]]) -> str:
    """The hidden user goal, written for an LLM that plays the user."""
    lines = [
        f"You are making plans and need help choosing: {', '.join(aspects)}.",
        "Your preferences (never state a value directly; hint at it, like the example):",
    ]
    for aspect in aspects:
        for attr, value in preferences[aspect].items():
            lines.append(f'- {aspect}, {attr}: {value} (e.g. "{HINTS[aspect][attr][value][0]}")')
    lines += [
        "Do not volunteer preferences up front. When the assistant asks about one of these, "
        "hint at exactly one of its preferences you have not shared yet.",
        "When asked about something whose preferences you have all shared, say that is all you "
        "care about for it.",
        "If the assistant talks about other things three times in a row, hint at one preference on your own.",
        f"Once every item has a recommendation, thank the assistant and write {STOP}.",
    ]
    return "\n".join(lines)


def privileged_text(data: dict[str, Any]) -> str:
    """A readable summary of the truth, for a privileged critic."""
    parts = []
    for aspect in data["aspects"]:
        prefs = ", ".join(f"{a}={v}" for a, v in data["preferences"][aspect].items())
        by_id = {o["id"]: o for o in data["catalogue"][aspect]}
        best = data["best"][aspect]
        ok = ", ".join(f"{i} (${by_id[i]['price']})" for i in data["acceptable"][aspect]) or "none"
        parts.append(
            f"{aspect}: the user wants {prefs}; best option {best} (${by_id[best]['price']}); "
            f"acceptable: {ok}; every other option violates a preference."
        )
    return "\n".join(parts)


def task_signature(task: Task) -> tuple:
    """The content of a task without its id and split (for disjointness across splits)."""
    d = task.data
    return tuple(
        (a, tuple(d["preferences"][a].items()), tuple(tuple(o.values()) for o in d["catalogue"][a]))
        for a in d["aspects"]
    )


def generate_split(
    seed: int, split: str, n: int, cfg: GenConfig, exclude: set[tuple] | frozenset[tuple] = frozenset()
) -> list[Task]:
    """`n` tasks of a split; any task whose content is in `exclude` is redrawn."""
    tasks = []
    for i in range(n):
        task_id = f"pref-{split}-{i:05d}"
        attempt = 0
        while True:
            rng = random.Random(f"preferences/{seed}/{split}/{i}/{attempt}")
            task = make_task(rng, cfg, task_id, split)
            if task_signature(task) not in exclude:
                break
            attempt += 1
        tasks.append(task)
    return tasks
