"""The one reader of a retail conversation: what happened, rebuilt from the messages alone.

`read_conversation` walks the messages an actor saw and rebuilds, without the env, what
`RetailEnv` tracks: which calls ran and what they returned, the authenticated user (the result
of the latest successful `find_user_id_*` call) and whether the user's latest reply is an
explicit "yes" given after the last write (the env's `_confirmed`: set by each user reply to a
reply, cleared by a successful write). Critic feedback round-trips (an assistant proposal
followed by a user message starting with `REVISION_PREFIX`) are dropped first, and the
engine's parse-error observations are not user replies.

Both the noisy oracle (`oracle_plan`, which plans the next step from `events`) and the rule
critic (`review/rules.py`, which checks a proposal against the state) read conversations here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lightning_asym.backends.toolcalls import parse_action
from lightning_asym.envs.retail.policy import says_yes
from lightning_asym.envs.retail.tools import WRITE_TOOLS
from lightning_asym.types import REVISION_PREFIX, Action, Message


def strip_revisions(messages: Sequence[Message]) -> tuple[list[Message], str | None]:
    """The messages without critic round-trips, and the rejected proposal's text when the
    conversation ends with a revision request (else None).

    Each `REVISION_PREFIX` user message and the rejected assistant proposal just before it are
    dropped, so what remains is the conversation the user and the tools saw.
    """
    out: list[Message] = []
    rejected = None
    for i, m in enumerate(messages):
        if m.role == "user" and (m.content or "").startswith(REVISION_PREFIX):
            if out and out[-1].role == "assistant":
                last = out.pop()
                if i == len(messages) - 1:
                    rejected = last.content or ""
            continue
        out.append(m)
    return out, rejected


def action_of(m: Message) -> Action | None:
    """The action of an assistant message: its first tool call, else its parsed text (None if unparseable)."""
    if m.tool_calls:
        return Action(m.tool_calls[0].name, dict(m.tool_calls[0].arguments))
    action, _ = parse_action(m.content or "")
    return action


@dataclass
class Event:
    """One step of the conversation."""

    kind: str
    """`say` (an assistant reply), `call` (a tool call and its result), `user` (a user message) or
    `garbled` (assistant output that did not parse; the engine's error observation is dropped)."""
    text: str = ""
    """The reply, the tool's result, the user's message, or the unparsed output."""
    action: Action | None = None
    ok: bool = False
    """For a call: a tool result came back and it is not an error, so the call took effect."""


@dataclass
class Conversation:
    """The conversation as the retail readers see it (see the module docstring)."""

    events: list[Event] = field(default_factory=list)
    auth_user: str | None = None
    confirmed: bool = False
    """The user's latest reply holds a standalone "yes" and no write succeeded since."""
    confirmed_text: str = ""
    """The agent's reply that the user's latest reply answered (what the user said yes to)."""

    @property
    def calls(self) -> list[Event]:
        """The tool calls with their results, in order."""
        return [e for e in self.events if e.kind == "call"]

    @property
    def writes(self) -> list[Action]:
        """The successful write calls, in order."""
        return [e.action for e in self.calls if e.ok and e.action.name in WRITE_TOOLS]

    @property
    def tool_texts(self) -> list[str]:
        return [e.text for e in self.calls]

    @property
    def user_texts(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "user"]


def read_conversation(messages: Sequence[Message]) -> Conversation:
    """Events, authentication and confirmation, mirroring how `RetailEnv` tracks them."""
    conv = Conversation()
    msgs = [m for m in strip_revisions(messages)[0] if m.role != "system"]
    prev: Action | None = None  # the action of the latest assistant message, if it parsed
    prev_role = ""
    for i, m in enumerate(msgs):
        if m.role == "assistant":
            prev = action_of(m)
            if prev is None:
                conv.events.append(Event("garbled", m.content or ""))
            elif prev.is_reply:
                conv.events.append(Event("say", prev.content, prev))
            else:
                nxt = msgs[i + 1] if i + 1 < len(msgs) else None
                result = (nxt.content or "") if nxt is not None and nxt.role == "tool" else ""
                ok = nxt is not None and nxt.role == "tool" and not result.lstrip().startswith("Error")
                conv.events.append(Event("call", result, prev, ok))
                if ok and prev.name in WRITE_TOOLS:
                    conv.confirmed = False  # one "yes" covers one write
                if ok and prev.name.startswith("find_user_id"):
                    conv.auth_user = result.strip()
        elif m.role == "user" and not (prev_role == "assistant" and prev is None):
            # (a user message right after unparseable output is the engine's error observation)
            text = m.content or ""
            conv.events.append(Event("user", text))
            if prev_role == "assistant" and prev is not None and prev.is_reply:
                conv.confirmed = says_yes(text)
                conv.confirmed_text = prev.content
        prev_role = m.role
    return conv
