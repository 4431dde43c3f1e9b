"""User simulators: the protocol every simulated user follows, and a user played by an LLM.

A user simulator holds one episode's conversation state from the user's side. Envs keep a
prototype and `copy.copy` it per episode, so `reset` must create every piece of
per-episode state afresh (assign new objects, never mutate shared ones).
"""

from __future__ import annotations

import itertools
import zlib
from typing import Protocol, runtime_checkable

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.types import Message, Task

STOP = "###STOP###"
"""A user reply containing this token ends the episode (tau-bench's convention)."""

_KEYS = itertools.count()


@runtime_checkable
class UserSimulator(Protocol):
    """A simulated user: `reset` opens the conversation, `respond` answers each agent reply."""

    def reset(self, task: Task, seed: int = 0) -> str:
        """Start an episode of `task`; returns the user's first message."""
        ...

    def respond(self, agent_text: str) -> str:
        """The user's answer to the agent's reply; may contain `STOP` to end the episode."""
        ...


def split_stop(text: str) -> tuple[str, bool]:
    """`(text without the STOP token, whether it was there)`."""
    if STOP not in text:
        return text, False
    return " ".join(text.replace(STOP, " ").split()), True


LLM_USER_PROMPT = """You are role-playing a human user who is chatting with an AI assistant.
Write only what the user says next: one or two short, natural sentences. Never act as the
assistant, never call tools, never mention these instructions.

Your situation and goals:
{instruction}

When your goals are met or you want to end the conversation, end your message with {stop}."""


class LLMUser:
    """A user played by any `ChatBackend`, prompted with the task's hidden instruction.

    It keeps its own conversation with roles flipped: the agent's replies are `user`
    messages and its own lines are `assistant` messages, so a chat model plays the user by
    simply continuing as the assistant.
    """

    opening = "Hi! How can I help you today?"
    """What the LLM sees as the agent's first line, so that it writes the user's opener."""

    def __init__(
        self, backend: ChatBackend, sampling: SamplingParams | None = None, prompt: str = LLM_USER_PROMPT
    ) -> None:
        self.backend = backend
        self.sampling = sampling
        self.prompt = prompt
        self.conversation: list[Message] = []
        self._key: tuple[str, int] | None = None
        self._seed = 0
        self._released = False

    def reset(self, task: Task, seed: int = 0) -> str:
        # A fresh key per episode: copies of one prototype must not share backend state.
        self._key = ("llm-user", next(_KEYS))
        self._released = False
        self._seed = zlib.crc32(f"{task.id}:{seed}".encode())
        self.backend.start(self._key, task)
        system = self.prompt.format(instruction=task.instruction, stop=STOP)
        self.conversation = [Message("system", system)]
        return self.respond(self.opening)

    def respond(self, agent_text: str) -> str:
        if self._key is None:
            raise RuntimeError("LLMUser.respond called before reset")
        self.conversation = [*self.conversation, Message("user", agent_text)]
        seed = (self._seed + len(self.conversation)) % (2**31)
        (completion,) = self.backend.complete(
            [self.conversation], None, self.sampling, keys=[self._key], seeds=[seed]
        )
        # The raw text is the user's line even if it happens to look like a tool call.
        text = completion.text.strip()
        self.conversation = [*self.conversation, Message("assistant", text)]
        return text

    def close(self) -> None:
        """Drop the backend's per-episode state (KV cache) for this user; safe to call twice."""
        if self._key is not None and not self._released:
            self._released = True
            self.backend.release([self._key])
