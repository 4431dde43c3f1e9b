"""The supervision loop: a reviewer checks each proposed action before it reaches the env.

On `revise`, the feedback goes to the actor only (as a user-role message that starts with
`REVISION_PREFIX`, appended after its rejected proposal) and the actor proposes again, up to
`max_revisions` times. The episode never restarts. The final conversation holds only the
action that went out; every proposal and review is kept in `Turn.proposals`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.review.base import Reviewer, ReviewRequest
from lightning_asym.types import REVISION_PREFIX, Action, Message, Proposal, ReviewExample, Task

FALLBACKS = ("last", "first", "block")


@dataclass
class SupervisionConfig:
    """How supervision behaves."""

    max_revisions: int = 2
    """How many times the actor may revise one turn's action after a `revise` verdict."""
    fallback: str = "last"
    """When the budget is spent: `last` sends the last proposal, `first` the first one,
    `block` sends a safe holding reply to the user instead."""
    privileged: bool = False
    """Give the critic the task's privileged information (never the actor)."""
    block_message: str = "Let me double-check that before I continue. Could you confirm what you need?"
    """The reply sent when `fallback: block` applies."""

    def __post_init__(self) -> None:
        if self.max_revisions < 0:
            raise ValueError(f"supervision.max_revisions must be >= 0, got {self.max_revisions}")
        if self.fallback not in FALLBACKS:
            raise ValueError(f"supervision.fallback must be one of {FALLBACKS}, got {self.fallback!r}")


def revision_messages(messages: Sequence[Message], proposal_text: str, feedback: str) -> list[Message]:
    """The actor's view when asked to revise: its rejected proposal, then the critic's feedback."""
    return [
        *messages,
        Message("assistant", content=proposal_text),
        Message("user", content=f"{REVISION_PREFIX} {feedback}".strip()),
    ]


def supervise_step(
    *,
    live_messages: Sequence[Sequence[Message]],
    tasks: Sequence[Task],
    privileged: Sequence[str],
    completions: Sequence[Completion],
    actor: ChatBackend,
    reviewer: Reviewer,
    tools: list[dict[str, Any]],
    sampling: SamplingParams | None,
    keys: Sequence[Hashable],
    seeds: Sequence[int],
    config: SupervisionConfig,
    judges: Sequence[Callable[[Action | None], dict[str, Any] | None]] | None = None,
    examples: Sequence[ReviewExample] = (),
) -> tuple[list[Completion], list[list[Proposal]]]:
    """Review one step's proposals of all live episodes, batching reviews and revisions.

    `judges[i]`, when given, is the env's `check_action` for episode i: each proposal is
    labelled with the env's own verdict (`deviation`, `violation`) so reviewers can be scored;
    an env that does not judge returns None and its proposals stay unlabelled. `examples` (the
    env's `review_examples()`) ride on every review request, for a few-shot critic.
    Returns the completion that goes out for each episode and its proposal history.
    """
    n = len(completions)
    history: list[list[Proposal]] = [[] for _ in range(n)]
    current = list(completions)
    chosen: list[Completion | None] = [None] * n
    views = [list(m) for m in live_messages]
    pending = list(range(n))
    for attempt in range(config.max_revisions + 1):
        requests = [
            ReviewRequest(
                live_messages[i],
                current[i].text,
                current[i].action,
                current[i].parse_error,
                tasks[i],
                tools,
                privileged[i] if config.privileged else None,
                key=keys[i],
                examples=examples,
            )
            for i in pending
        ]
        reviews = reviewer.review(requests)
        revise = []
        for i, review in zip(pending, reviews):
            c = current[i]
            label = _label(judges[i] if judges else None, c)
            history[i].append(
                Proposal(c.text, c.action, c.parse_error, review, c.num_completion_tokens, label)
            )
            if review.approved:
                chosen[i] = c
            elif attempt == config.max_revisions:
                chosen[i] = _fallback(history[i], completions[i], c, config)
            else:
                revise.append(i)
        if not revise:
            break
        for i in revise:
            views[i] = revision_messages(views[i], current[i].text, history[i][-1].review.feedback)
        # same keys: a scripted actor keeps its plan, a KV cache keeps the shared prefix
        new = actor.complete(
            [views[i] for i in revise],
            tools,
            sampling,
            keys=[keys[i] for i in revise],
            seeds=[seeds[i] * 31 + attempt + 1 for i in revise],
        )
        for i, c in zip(revise, new):
            current[i] = c
        pending = revise
    assert all(c is not None for c in chosen)
    return chosen, history  # type: ignore[return-value]


def _label(
    judge: Callable[[Action | None], dict[str, Any] | None] | None, c: Completion
) -> dict[str, Any] | None:
    label = judge(c.action) if judge is not None else None
    if label is None:
        return None
    if c.action is None:
        return {"deviation": True, "violation": f"unparseable action ({c.parse_error})"}
    return dict(label)


def _fallback(
    history: list[Proposal], first: Completion, last: Completion, config: SupervisionConfig
) -> Completion:
    if config.fallback == "first":
        return first
    if config.fallback == "last":
        return last
    return Completion(text=config.block_message, action=Action.reply(config.block_message))
