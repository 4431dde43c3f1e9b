"""The noisy oracle on other envs' tasks: where an episode stands in an agent plan, and its mistakes.

An env that is not our retail offers its tasks' plans as `data["agent_plan"]`
(`envs/agent_plan.py`: the steps, tagged auth/read/write/transfer, and real wrong values for
each write). This module plays such a plan the way `oracle_plan` plays a retail task: it is
stateless, rebuilding from the conversation which plan steps were done, and it proposes what a
competent agent does next: authenticate, read, describe the write and ask for a yes, write,
and at the end say "Done." with the task's required outputs.

Steps are matched to the calls in the conversation in order by tool name (a call made with a
wrong argument still counts as that step: the oracle does not redo it). A step left behind
(an authentication the oracle skipped) stays skipped, as on our retail, unless `force_auth`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.envs.agent_plan import TARGET_KEYS, plan_steps, step_action
from lightning_asym.envs.retail.conversation import Event
from lightning_asym.envs.retail.oracle_plan import _tweak, events_of
from lightning_asym.envs.retail.policy import says_yes
from lightning_asym.types import Action, Message, Task

CONFIRM = "Before I proceed, here is what I will do: {describe}. Do you confirm (yes/no)?"
CONFIRM_MARK = "(yes/no)?"
DONE = "Done."


@dataclass
class PlanStep:
    """The clean next action, with what kind of step it is (where failure modes can strike)."""

    action: Action
    tag: str  # auth | read | confirm | write | transfer | report
    first_of_intent: bool = False
    write: Action | None = None
    """For a confirmation: the write it asks about."""
    alternatives: dict[str, Any] = field(default_factory=dict)


def has_plan(task: Task) -> bool:
    return plan_steps(task.data) is not None


def done_text(task: Task) -> str:
    return " ".join([DONE, *task.required_outputs])


def _position(steps: list[dict[str, Any]], events: list[Event]) -> int:
    """How many plan steps the conversation's calls have passed (matched in order by tool name)."""
    j = 0
    for e in events:
        if e.kind != "call":
            continue
        k = next((k for k in range(j, len(steps)) if steps[k]["action"]["name"] == e.action.name), None)
        if k is not None:
            j = k + 1
    return j


def next_step(
    conv: Sequence[Message], task: Task, skip_auth: bool = False, force_auth: bool = False
) -> PlanStep:
    """The clean next step of a competent agent following the task's agent plan.

    `skip_auth` goes past the authentication steps (a failure mode); `force_auth` (after critic
    feedback) authenticates first when no authentication call succeeded yet.
    """
    steps = plan_steps(task.data) or []
    events = events_of(conv)
    auth = [s for s in steps if s["kind"] == "auth"]
    authed = any(
        e.kind == "call" and e.ok and any(e.action.name == s["action"]["name"] for s in auth) for e in events
    )
    if force_auth and auth and not authed:
        return PlanStep(step_action(auth[0]), "auth")
    j = _position(steps, events)
    while skip_auth and j < len(steps) and steps[j]["kind"] == "auth":
        j += 1
    if j >= len(steps):
        return PlanStep(Action.reply(done_text(task)), "report")
    step = steps[j]
    prev = steps[j - 1]["kind"] if j > 0 else None
    first = step["kind"] != "auth" and prev in (None, "auth", "write")
    action = step_action(step)
    if step["kind"] != "write":
        return PlanStep(action, step["kind"], first_of_intent=first)
    alts = step.get("alternatives") or {}
    if _confirmed(events):
        return PlanStep(action, "write", alternatives=alts)
    confirm = Action.reply(CONFIRM.format(describe=describe(action)))
    return PlanStep(confirm, "confirm", first_of_intent=first, write=action, alternatives=alts)


def describe(action: Action) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(action.kwargs.items()))
    return f"{action.name.replace('_', ' ')} ({args})"


def _confirmed(events: list[Event]) -> bool:
    """Whether, since the latest call, the agent asked to confirm and the user's latest word is a yes."""
    last_call = max((i for i, e in enumerate(events) if e.kind == "call"), default=-1)
    asks = [
        i
        for i in range(last_call + 1, len(events))
        if events[i].kind == "say" and CONFIRM_MARK in events[i].text
    ]
    if not asks:
        return False
    after = events[asks[-1] + 1 :]
    users = [e for e in after if e.kind == "user"]
    return len(users) == 1 and after[0].kind == "user" and says_yes(users[0].text)


# ---------------------------------------------------------------------------- injected mistakes


def wrong_argument(step: PlanStep, rng) -> Action:
    """The write with one non-target argument swapped for a real wrong value (else one digit changed)."""
    kw = dict(step.action.kwargs)
    alts = {k: v for k, v in step.alternatives.items() if k not in TARGET_KEYS and k in kw}
    choices = [k for k in sorted(alts) if _candidates(kw[k], alts[k])]
    if not choices:
        key = next(iter(sorted(k for k in kw if isinstance(kw[k], str))), None)
        if key is not None:
            kw[key] = _tweak(kw[key], rng)
        return Action(step.action.name, kw)
    what = rng.choice(choices)
    if isinstance(kw[what], list):
        positions = _candidates(kw[what], alts[what])
        j = rng.choice(positions)
        kw[what] = [rng.choice(alts[what][j]) if i == j else v for i, v in enumerate(kw[what])]
    else:
        kw[what] = rng.choice(alts[what])
    return Action(step.action.name, kw)


def _candidates(value: Any, alts: list[Any]) -> list[int] | bool:
    """For a list argument, the positions that have wrong values; otherwise whether there are any."""
    if isinstance(value, list):
        return [j for j in range(min(len(value), len(alts))) if isinstance(alts[j], list) and alts[j]]
    return bool(alts)


def wrong_target(step: PlanStep, rng) -> Action:
    """The write aimed at another order (or reservation) of the user; `wrong_argument` if it has none."""
    kw = dict(step.action.kwargs)
    key = next((k for k in TARGET_KEYS if k in kw and step.alternatives.get(k)), None)
    if key is None:
        return wrong_argument(step, rng)
    kw[key] = rng.choice(step.alternatives[key])
    return Action(step.action.name, kw)


def numeric_outputs(task: Task) -> list[str]:
    """The required outputs a sloppy agent can misstate (amounts and counts)."""
    return [o for o in task.required_outputs if re.fullmatch(r"\d+(\.\d+)?", o)]


def earlier_report(conv: Sequence[Message]) -> str | None:
    """The "Done." reply already said (where the outputs were first stated), if any."""
    return next((e.text for e in events_of(conv) if e.kind == "say" and e.text.startswith(DONE)), None)
