"""What a reviewing critic sees and the protocol every reviewer follows."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar, runtime_checkable

from lightning_asym.types import Action, Message, Review, ReviewExample, Task


@dataclass
class ReviewRequest:
    """What a critic sees: the conversation so far and the proposed action.

    `messages` is the conversation as the actor saw it before proposing (the policy is its
    system message). `privileged` is filled only when the supervision config allows the
    critic to see it; it never reaches the actor. `key` names the episode (the engine's episode
    key), so a reviewer may keep per-episode state such as a prompt's KV cache; None: no episode.
    `examples` are the env's worked reviews (`MultiTurnEnv.review_examples`), the same tuple for
    every request of one env, for a few-shot critic's prompt; empty where no env is known (`serve`,
    `Supervisor`).
    """

    messages: Sequence[Message]
    text: str
    action: Action | None
    parse_error: str | None
    task: Task
    tools: list[dict[str, Any]] = field(default_factory=list)
    privileged: str | None = None
    key: Hashable | None = None
    examples: Sequence[ReviewExample] = ()


Requests = TypeVar("Requests", bound=Sequence["ReviewRequest"])
"""The batch a reviewer gets: the engine passes a list; implementations may annotate it
`list[ReviewRequest]` or `Sequence[ReviewRequest]`. A TypeVar because jsonargparse (the CLI)
checks a class against a protocol by comparing parameter types for equality, TypeVars excepted:
with `Sequence[ReviewRequest]` here, a reviewer annotated `list[...]` was refused as "does not
implement protocol Reviewer"."""


@runtime_checkable
class Reviewer(Protocol):
    """Anything that reviews a batch of proposed actions, one `Review` per request, in order.

    Batching matters: the rollout engine sends the proposals of every live episode at once,
    so a model-backed reviewer can run them in one forward pass or concurrent API calls.
    """

    def review(self, requests: Requests) -> list[Review]: ...


@runtime_checkable
class StatefulReviewer(Reviewer, Protocol):
    """A reviewer that keeps per-episode state under `ReviewRequest.key` (e.g. a KV cache).

    The rollout engine calls `release(keys)` when those episodes end, so the state is dropped;
    such a reviewer must still bound its state when used without the engine.
    """

    def release(self, keys: Sequence[Hashable]) -> None: ...
