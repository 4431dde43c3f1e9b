"""`TauRuleCritic`: τ-bench's checkable policy rules as code, for τ-bench retail and airline.

`RetailRuleCritic` cannot review τ-bench episodes: it rebuilds our retail store from
`task.data["db_seed"]` (τ-bench tasks have none; τ-bench's database is a fixed file) and its
tool list lacks τ-bench's `calculate`. This critic reads τ-bench's database the way the agent
does, through the tool outputs in the conversation, and never the task's gold actions or the env.

==================  ===========================================================================
rule                revise when
==================  ===========================================================================
``parse``           the proposal could not be parsed
``unknown_tool``    the tool is not one of the domain's (τ-bench's ``calculate`` and ``think`` are)
``authenticate``    retail: a write before a ``find_user_id_*`` call returned a user id
``grounded``        a write names an id, zip or product/item/payment id that appears in no earlier
                    tool output or user message (a mistyped or made-up argument)
``reason``          retail: a cancellation's reason contradicts the user's words ("by mistake" /
                    "no longer needed")
``transfer``        a transfer to a human although no user message asked for one
==================  ===========================================================================

Reads and replies are approved: a read leaves the database alone, so τ-bench's reward (and
`TauBenchEnv.check_action`) never counts it wrong. Explicit confirmation before a write is a
τ-bench wiki rule that is not checked, for the same reason `check_action` does not judge it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_asym.envs.tau_bench.judge import AUTH_TOOLS, READ_TOOLS, TRANSFER, WRITE_TOOLS
from lightning_asym.review.base import ReviewRequest
from lightning_asym.types import APPROVE, REVISE, Message, Review

HUMAN_WORDS = ("human", "representative", "real person", "live agent", "supervisor", "manager")


def _grounded_keys(key: str) -> bool:
    return key.endswith("_id") or key.endswith("_ids") or key == "zip"


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


class TauRuleCritic:
    """Rules of τ-bench's wikis that code can check from the conversation (see the module docstring).

    Args:
        domain: ``retail`` or ``airline`` (τ-bench's domain of the episodes it reviews).
    """

    def __init__(self, domain: str = "retail") -> None:
        if domain not in WRITE_TOOLS:
            raise ValueError(
                f"model.init_args.reviewer.init_args.domain must be one of {sorted(WRITE_TOOLS)}, got {domain!r}"
            )
        self.domain = domain
        self.writes, self.reads = WRITE_TOOLS[domain], READ_TOOLS[domain]

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        return [self._review(r) for r in requests]

    def _review(self, r: ReviewRequest) -> Review:
        broken = self.check(r.messages, r.action)
        if broken is None:
            return Review(APPROVE)
        rule, feedback = broken
        return Review(REVISE, f"[{rule}] {feedback}")

    def check(self, messages: Sequence[Message], action: Any) -> tuple[str, str] | None:
        """`(rule, feedback)` for the first rule `action` breaks after `messages`, or None."""
        if action is None:
            return (
                "parse",
                "Your output could not be parsed: write a reply, or one tool call in the required format.",
            )
        if action.is_reply or action.name in self.reads:
            return None
        user_text = " ".join((m.content or "") for m in messages if m.role == "user").lower()
        if action.name == TRANSFER:
            if any(w in user_text for w in HUMAN_WORDS):
                return None
            return "transfer", "The user has not asked for a human; keep helping with the tools you have."
        if action.name not in self.writes:
            return (
                "unknown_tool",
                f"There is no tool {action.name!r}; use one of the tools listed in the system message.",
            )
        tool_outputs = [m for m in messages if m.role == "tool" and not (m.content or "").startswith("Error")]
        auth = AUTH_TOOLS.get(self.domain)
        if auth and not any(m.name in auth for m in tool_outputs):
            return (
                "authenticate",
                "Authenticate the user first: find their user id by email, or by name and zip.",
            )
        seen = " ".join(m.content or "" for m in tool_outputs) + " " + user_text
        for key, value in sorted(action.kwargs.items()):
            if not _grounded_keys(key):
                continue
            for s in _strings(value):
                if s and s.lower() not in seen.lower():
                    return (
                        "grounded",
                        f"{key}={s!r} appears nowhere in the tool outputs or the user's messages; look it up first.",
                    )
        reason = action.kwargs.get("reason")
        if self.domain == "retail" and action.name == "cancel_pending_order" and isinstance(reason, str):
            if reason == "no longer needed" and "mistake" in user_text and "no longer" not in user_text:
                return "reason", "The user said the order was a mistake: the reason is 'ordered by mistake'."
            if reason == "ordered by mistake" and "no longer" in user_text and "mistake" not in user_text:
                return "reason", "The user no longer needs the order: the reason is 'no longer needed'."
        return None
