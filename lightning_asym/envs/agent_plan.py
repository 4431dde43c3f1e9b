"""What an env offers a plan-following actor: the agent plan of a task (`data["agent_plan"]`).

A plan-following actor (`NoisyOracleBackend`) needs two things an env knows and the actor does
not: what a competent agent calls, in order, and which *real* wrong values a sloppy agent could
put in each write (another order of the same user, another item of the order, another payment
method of the user...). An env offers both as plain JSON in its tasks, so the actor never
imports the env's package or reads its database:

    data["agent_plan"] = {"steps": [step, ...]}
    step = {"kind": "auth" | "read" | "write" | "transfer",
            "action": {"name": str, "kwargs": {...}},
            "alternatives": {argument: [value, ...] or [[value, ...] per position]}}

``auth``: a call that authenticates the user (the agent makes it before any write); ``read``:
a call that leaves the database alone; ``write``: a call that changes it (a competent agent
describes it and asks the user for a yes first); ``transfer``: a hand-over to a human agent
that the task itself needs. ``alternatives`` (writes only, may be empty): wrong values for an
argument, taken from the env's database; a list argument gets one candidate list per position.
Arguments in `TARGET_KEYS` name the object a write acts on (the oracle's ``wrong_order``
mistake); the others are ``wrong_argument``'s.
"""

from __future__ import annotations

import json
from typing import Any

from lightning_asym.types import Action

PLAN_KEY = "agent_plan"
KINDS = ("auth", "read", "write", "transfer")
TARGET_KEYS = ("order_id", "reservation_id")
"""Arguments that name the object a write acts on (an order, a reservation)."""


def plan_step(kind: str, action: Action, alternatives: dict[str, list[Any]] | None = None) -> dict[str, Any]:
    """One step of an agent plan, as plain JSON (see the module docstring)."""
    if kind not in KINDS:
        raise ValueError(f"agent plan step kind must be one of {KINDS}, got {kind!r}")
    step: dict[str, Any] = {"kind": kind, "action": {"name": action.name, "kwargs": dict(action.kwargs)}}
    if kind == "write":
        step["alternatives"] = {k: v for k, v in sorted((alternatives or {}).items()) if v}
    return step


def plan_steps(data: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The steps of a task's agent plan, or None when its env offers none."""
    plan = data.get(PLAN_KEY)
    if plan is None:
        return None
    steps = plan.get("steps") if isinstance(plan, dict) else None
    if not isinstance(steps, list):
        raise ValueError(f"task data[{PLAN_KEY!r}] must be a dict with a 'steps' list, got {plan!r:.80}")
    return steps


def step_action(step: dict[str, Any]) -> Action:
    """A fresh `Action` of a plan step (its arguments deep-copied, so a mistake cannot edit the plan)."""
    return Action(step["action"]["name"], json.loads(json.dumps(step["action"]["kwargs"])))
