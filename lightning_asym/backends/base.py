"""The `ChatBackend` contract: batched chat completion that returns parsed actions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.types import Action, Message, Task


@dataclass
class SamplingParams:
    """How to sample a completion."""

    max_new_tokens: int = 128
    """Upper bound on generated tokens per call."""
    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling mass; 1.0 disables it."""
    top_k: int = 0
    """Keep only the k most likely tokens; 0 disables it."""
    stop: list[str] = field(default_factory=list)
    """Generation ends when any of these strings appears; the string is kept in the text."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"sampling.max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"sampling.temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"sampling.top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Completion:
    """One generated assistant message.

    `action` is the parsed action, or None with `parse_error` set. Local backends also fill
    `prompt_ids` (the context tokens new at this turn: after the tokens the same key held
    when the turn began, or after its first `prefix_len` of them when the turn's context
    dropped the rest, e.g. a rejected proposal; a revision's include the proposal and the
    feedback), `completion_ids` (generated tokens) and `logprobs` (one per generated token,
    under the sampling distribution's logits before temperature).
    """

    text: str
    action: Action | None
    parse_error: str | None = None
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prefix_len: int | None = None
    finish_reason: str = "stop"
    num_prompt_tokens: int = 0
    num_completion_tokens: int = 0


class ChatBackend(ABC):
    """Anything that turns a batch of conversations into completions.

    `keys` identify the conversations across calls (one key per episode) so that a backend
    may keep state such as a KV cache; `release(keys)` drops that state when an episode
    ends. `seeds` give each conversation its own sampling seed, so a conversation's
    completion does not depend on which others share the batch.
    """

    @abstractmethod
    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in order."""

    def start(self, key: Hashable, task: Task) -> None:  # noqa: B027  (optional hook)
        """Called by the rollout engine when an episode of `task` begins under `key`.

        Real models ignore it; scripted and oracle actors use it to look up their plan.
        """

    def release(self, keys: Sequence[Hashable]) -> None:  # noqa: B027  (optional hook)
        """Forget per-conversation state (KV caches) for these keys."""
