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


class ScriptedBackend(ChatBackend):
    """Replies with `policy(messages, task, rng)`, or cycles through fixed `responses`.

    The text goes through the same tool-call parser as a model's output, so a scripted
    agent exercises exactly the code paths a real one does. Token counts are whitespace
    words, since there is no tokenizer.
    """

    def __init__(self, policy: ScriptedPolicy | None = None, responses: list[str] | None = None) -> None:
        if policy is None and not responses:
            raise ValueError("ScriptedBackend needs `policy` or a non-empty `responses` list")
        self.policy = policy
        self.responses = list(responses or [])
        self._tasks: dict[Hashable, Task] = {}
        self._calls: dict[Hashable, int] = {}

    def start(self, key: Hashable, task: Task) -> None:
        self._tasks[key] = task
        self._calls[key] = 0

    def release(self, keys: Sequence[Hashable]) -> None:
        for k in keys:
            self._tasks.pop(k, None)
            self._calls.pop(k, None)

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
            if self.policy is not None:
                text = self.policy(conv, self._tasks.get(key), random.Random(f"{seed}:{n}"))
            else:
                text = self.responses[n % len(self.responses)]
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
