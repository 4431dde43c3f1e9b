"""A backend that plays a policy written as code: for tests, baselines and benchmarks."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.toolcalls import parse_action
from lightning_asym.types import Message, Task

ScriptedPolicy = Callable[[Sequence[Message], "Task | None", random.Random], str]
"""`policy(messages, task, rng) -> text`: the assistant's next message as raw text."""


class TextPolicyBackend(ChatBackend):
    """Base for backends whose reply is text computed by code, not sampled from a model.

    It keeps each episode's task (from `start`) and call count, passes the text through the
    same tool-call parser as a model's output, and counts whitespace words as tokens, since
    there is no tokenizer. Subclasses implement `reply`.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, Task] = {}
        self._calls: dict[Hashable, int] = {}

    def start(self, key: Hashable, task: Task) -> None:
        self._tasks[key] = task
        self._calls[key] = 0

    def release(self, keys: Sequence[Hashable]) -> None:
        for k in keys:
            self._tasks.pop(k, None)
            self._calls.pop(k, None)

    def task_of(self, key: Hashable) -> Task | None:
        """The task of the episode under `key` (None if `start` was never called for it)."""
        return self._tasks.get(key)

    def reply(self, messages: Sequence[Message], task: Task | None, seed: int, call: int) -> str:
        """The assistant's next message as raw text; `call` counts this episode's earlier calls."""
        raise NotImplementedError

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        keys = list(keys) if keys is not None else list(range(len(conversations)))
        seeds = list(seeds) if seeds is not None else [0] * len(conversations)
        out = []
        for conv, key, seed in zip(conversations, keys, seeds):
            n = self._calls.get(key, 0)
            self._calls[key] = n + 1
            text = self.reply(conv, self.task_of(key), seed, n)
            action, err = parse_action(text)
            out.append(
                Completion(
                    text=text,
                    action=action,
                    parse_error=err,
                    num_prompt_tokens=sum(len((m.content or "").split()) for m in conv),
                    num_completion_tokens=len(text.split()),
                )
            )
        return out


class ScriptedBackend(TextPolicyBackend):
    """Replies with `policy(messages, task, rng)`, or cycles through fixed `responses`.

    The text goes through the same tool-call parser as a model's output, so a scripted
    agent exercises exactly the code paths a real one does.
    """

    def __init__(self, policy: ScriptedPolicy | None = None, responses: list[str] | None = None) -> None:
        if policy is None and not responses:
            raise ValueError("ScriptedBackend needs `policy` or a non-empty `responses` list")
        super().__init__()
        self.policy = policy
        self.responses = list(responses or [])

    def reply(self, messages: Sequence[Message], task: Task | None, seed: int, call: int) -> str:
        if self.policy is not None:
            return self.policy(messages, task, random.Random(f"{seed}:{call}"))
        return self.responses[call % len(self.responses)]
