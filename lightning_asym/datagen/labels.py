"""Pure labeling functions: trajectories and branch outcomes in, `CriticExample`s out.

Two sources, both without touching the actor:

* **gold** (`gold_labels`): the env's own judgement stored in each turn's `info`
  (`deviation`, `rule`, `violation`). Turns before the first deviation are `approve`; the first
  deviating action is `revise`, with one sentence that names the broken rule (keyed on its id,
  `envs/retail/policy.py`) or the correct action and argument (compared with the env's
  remaining gold actions); what
  follows is off-plan and is not labelled. A failed episode in which the env saw no
  deviation failed for a reason nobody detected, so its turns are not approved.
* **branch** (`branch_labels`): the first actions of re-rolls from one prefix, each with
  the success of its continuation; actions that succeed about as often as the best one
  are approved, the others get `revise` naming the better action. Actions the env flags
  are left to the gold labels (a broken rule is wrong even when the episode succeeds).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_asym.backends.toolcalls import FORMAT_HINT
from lightning_asym.envs.retail.policy import (
    AUTHENTICATE_FIRST,
    EXPLICIT_CONFIRMATION,
    NO_MADE_UP_FACTS,
    NO_NEEDLESS_TRANSFER,
    OWN_DATA_ONLY,
)
from lightning_asym.review.format import render_action
from lightning_asym.types import APPROVE, REVISE, Action, CriticExample, Message, Trajectory

AUTH_TOOLS = "find_user_id_by_email or find_user_id_by_name_zip"


def deviated(info: dict[str, Any]) -> bool:
    """Whether a step's info marks the action as off-plan (a deviation or a broken rule)."""
    return bool(info.get("deviation")) or bool(info.get("violation"))


def first_deviation(traj: Trajectory) -> int | None:
    """Index of the first turn whose action the env judged off-plan (parse errors do not count:
    the env never saw them and the episode goes on as before)."""
    for t in traj.turns:
        if t.action is not None and deviated(t.info):
            return t.index
    return None


def action_key(action: Action | None, text: str = "") -> str:
    """A canonical key of a proposal: the same action always gets the same key."""
    if action is None:
        return "unparseable:" + " ".join(text.split())
    return json.dumps([action.name, action.kwargs], sort_keys=True)


# --------------------------------------------------------------------------- gold feedback


def _fmt(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _closest(action: Action, remaining: Sequence[Action]) -> tuple[Action, list[str]] | None:
    """The remaining gold action of the same tool with the fewest differing arguments."""
    best = None
    for g in remaining:
        if g.name != action.name:
            continue
        keys = sorted(set(g.kwargs) | set(action.kwargs))
        diff = [k for k in keys if g.kwargs.get(k) != action.kwargs.get(k)]
        if best is None or len(diff) < len(best[1]):
            best = (g, diff)
    return best


def _argument_fix(action: Action, remaining: Sequence[Action]) -> str | None:
    """'Use order #W1 rather than #W2' from the closest remaining gold action, if one differs."""
    close = _closest(action, remaining)
    if close is None or not close[1]:
        return None
    gold, diff = close
    parts = []
    for k in diff:
        want, got = gold.kwargs.get(k), action.kwargs.get(k)
        if k == "order_id":
            parts.append(f"order {_fmt(want)} rather than {_fmt(got)}")
        elif got is None:
            parts.append(f"{k} {_fmt(want)}")
        else:
            parts.append(f"{k} {_fmt(want)} rather than {_fmt(got)}")
    return "Use " + " and ".join(parts) + "."


def gold_feedback(
    action: Action | None,
    judgement: Mapping[str, Any] | None,
    remaining: Sequence[Action] | None,
) -> str:
    """One sentence saying what is wrong with an off-plan action and what to do instead.

    `judgement` is the env's judgement of the action (a step's `info` or a proposal's `label`:
    `rule`, the id of the broken policy rule, and `violation`, its prose; `unsupported` amounts;
    `error`, the tool's error message when the call failed), `remaining` the gold actions the
    env still expects (None when unknown).
    """
    if action is None:
        return f"Your output could not be parsed; {FORMAT_HINT}."
    judgement = judgement or {}
    remaining = list(remaining or [])
    fix = _argument_fix(action, remaining)
    rule, violation = judgement.get("rule"), judgement.get("violation")
    if rule == AUTHENTICATE_FIRST:
        return f"Authenticate the user first with {AUTH_TOOLS} before calling {action.name}."
    if rule == EXPLICIT_CONFIRMATION:
        return f"Describe the {action.name} action to the user and get an explicit yes before calling it."
    if rule == NO_NEEDLESS_TRANSFER:
        return "Do not transfer to a human agent: this request can be handled within policy."
    if rule == OWN_DATA_ONLY:
        oid = action.kwargs.get("order_id")
        whose = f"Order {oid}" if isinstance(oid, str) else "That account"
        instead = fix[0].lower() + fix[1:] if fix else "act only on the authenticated user's data."
        return f"{whose} belongs to another user; {instead}"
    if rule == NO_MADE_UP_FACTS and judgement.get("unsupported"):
        bad = ", ".join(judgement["unsupported"])
        return f"The amount {bad} is not supported by the data; state the amounts from the tool results."
    if rule or violation:  # a rule without its own sentence: the env's prose, else the rule's name
        return f"This action breaks the policy: it {(violation or rule).strip().rstrip('.')}."
    if fix is not None:
        return fix
    if action.is_reply:
        return "This reply does not follow the plan for the user's request."
    error = judgement.get("error")
    if error:
        return f"The call to {action.name} fails ({error.strip().rstrip('.')}); check its arguments."
    if remaining:
        return (
            f"The user's request does not call for {action.name}; "
            f"the next planned action is {render_action(remaining[0])}."
        )
    return f"The user's request does not call for {action.name}."


# --------------------------------------------------------------------------- gold labels


def _example(
    traj: Trajectory,
    messages: list[Message],
    text: str,
    action: Action | None,
    verdict: str,
    feedback: str,
    source: str,
    privileged: str,
    info: dict[str, Any],
) -> CriticExample:
    return CriticExample(
        task_id=traj.task_id,
        messages=list(messages),
        text=text,
        action=action,
        verdict=verdict,
        feedback=feedback if verdict == REVISE else "",
        source=source,
        privileged=privileged,
        info={"trial": traj.trial, **info},
    )


def gold_labels(
    traj: Trajectory,
    plans: Sequence[Sequence[Action]] | None = None,
    privileged: str = "",
) -> list[CriticExample]:
    """Label a trajectory's actions from the env's judgement (see the module docstring).

    `plans[t]` holds the gold actions the env still expected before turn t (from a replay),
    used to name the correct argument; missing entries fall back to the broken rule alone.
    Rejected proposals kept in `Turn.proposals` with an env `label` are labelled too.
    """
    stop = first_deviation(traj)
    # failed for a reason the env did not see: no approve is trustworthy (revisions still are)
    approvals = stop is not None or traj.success
    bounds = traj.state_boundaries()
    out: list[CriticExample] = []
    for turn in traj.turns:
        if stop is not None and turn.index > stop:
            break
        messages = traj.messages[: bounds[turn.index]]
        plan = plans[turn.index] if plans is not None and turn.index < len(plans) else None
        for p in turn.proposals:
            if p.label is None or p.text == turn.text:
                continue  # the one that went out is labelled from the step below
            bad = deviated(p.label) or p.action is None
            if not (bad or approvals):
                continue
            fb = gold_feedback(p.action, p.label, plan) if bad else ""
            info = {"turn": turn.index, "proposal": True, "violation": p.label.get("violation")}
            out.append(
                _example(
                    traj,
                    messages,
                    p.text,
                    p.action,
                    REVISE if bad else APPROVE,
                    fb,
                    "gold",
                    privileged,
                    info,
                )
            )
        bad = turn.action is None or deviated(turn.info)
        if not (bad or approvals):
            continue
        fb = gold_feedback(turn.action, turn.info, plan) if bad else ""
        info = {"turn": turn.index, "violation": turn.info.get("violation")}
        out.append(
            _example(
                traj,
                messages,
                turn.text,
                turn.action,
                REVISE if bad else APPROVE,
                fb,
                "gold",
                privileged,
                info,
            )
        )
    return out


# --------------------------------------------------------------------------- branch labels


@dataclass
class Sample:
    """One action proposed at a branch point and whether its continuation succeeded."""

    text: str
    action: Action | None
    success: bool
    flagged: bool = False
    """The env judged the action off-plan (or it did not parse): gold labels cover it."""


def branch_labels(
    traj: Trajectory,
    turn: int,
    samples: Sequence[Sample],
    margin: float = 0.1,
    privileged: str = "",
) -> list[CriticExample]:
    """Label the distinct actions proposed at `traj`'s turn `turn` from their continuations.

    Each distinct action's success rate is the posterior mean `(successes + 1) / (n + 2)`, so
    one lucky sample does not outrank a well-tried action. An action more than `margin` below
    the best rate gets `revise` naming the best action; one within the margin is approved if
    it succeeded at least once (otherwise the evidence says nothing and it is left out).
    Flagged actions are left to the gold labels: a rule broken is wrong however the episode
    ended, so such an action is neither approved nor taken as the better one. When no
    unflagged sample succeeded nothing is labelled (nothing shows what would have been better).
    """
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        if not (s.flagged or s.action is None):
            groups.setdefault(action_key(s.action, s.text), []).append(s)
    if not any(s.success for g in groups.values() for s in g):
        return []
    wins = {k: sum(s.success for s in g) for k, g in groups.items()}
    rate = {k: (wins[k] + 1) / (len(g) + 2) for k, g in groups.items()}
    best_key = max(groups, key=lambda k: (rate[k], len(groups[k])))
    best = groups[best_key][0]
    best_render = render_action(best.action, best.text)
    messages = traj.messages[: traj.state_boundaries()[turn]]
    out = []
    for k, g in groups.items():
        worse = rate[k] < rate[best_key] - margin
        if not worse and wins[k] == 0:
            continue
        feedback = f"This action leads to failure more often than this better action: {best_render}."
        info = {
            "turn": turn,
            "samples": len(g),
            "successes": wins[k],
            "success_rate": round(rate[k], 4),
            "best_rate": round(rate[best_key], 4),
        }
        if worse:
            info["better_action"] = best_render
        out.append(
            _example(
                traj,
                messages,
                g[0].text,
                g[0].action,
                REVISE if worse else APPROVE,
                feedback if worse else "",
                "branch",
                privileged,
                info,
            )
        )
    return out
