"""Plain data types shared by every room, and their JSONL (de)serialization.

Everything here is a dataclass of JSON-friendly fields, so a `Trajectory` written with
`write_jsonl` and read back with `read_jsonl` compares equal to the original.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

from lightning_asym.errors import UserError

RESPOND = "respond"
"""The reserved action name for a reply to the user (as in tau-bench); its text is `kwargs["content"]`."""

REVISION_PREFIX = "[critic feedback]"
"""Starts the user-role message that carries a critic's feedback to the actor (never to the user)."""

APPROVE = "approve"
REVISE = "revise"


@dataclass
class ToolCall:
    """One function call requested by the assistant (OpenAI chat format)."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(self.arguments, sort_keys=True)},
        }

    @classmethod
    def from_openai(cls, d: dict[str, Any]) -> ToolCall:
        fn = d.get("function", d)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            args = json.loads(args) if args.strip() else {}
        return cls(name=fn["name"], arguments=args, id=d.get("id", ""))


@dataclass
class Message:
    """A chat message in OpenAI format: role is system, user, assistant or tool."""

    role: str
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None

    def to_openai(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [tc.to_openai() for tc in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            d["name"] = self.name
        return d

    @classmethod
    def from_openai(cls, d: dict[str, Any]) -> Message:
        calls = d.get("tool_calls")
        return cls(
            role=d["role"],
            content=d.get("content"),
            tool_calls=[ToolCall.from_openai(c) for c in calls] if calls else None,
            tool_call_id=d.get("tool_call_id"),
            name=d.get("name"),
        )


@dataclass
class Action:
    """What the agent does in one step: `Action("respond", {"content": ...})` or a tool call."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def is_reply(self) -> bool:
        return self.name == RESPOND

    @property
    def content(self) -> str:
        return str(self.kwargs.get("content", "")) if self.is_reply else ""

    @classmethod
    def reply(cls, content: str) -> Action:
        return cls(RESPOND, {"content": content})

    def to_message(self, call_id: str = "call_0", text: str | None = None) -> Message:
        """The assistant message for this action; `text` keeps the raw model output if given."""
        if self.is_reply:
            return Message("assistant", content=self.content if text is None else text)
        return Message(
            "assistant", content=text, tool_calls=[ToolCall(self.name, dict(self.kwargs), call_id)]
        )


@dataclass
class Task:
    """One episode's specification.

    `instruction` is the hidden user-side goal (only the user simulator sees it);
    `gold_actions` and `required_outputs` define success; `privileged` is what only a
    privileged critic may read; `data` holds domain-specific fields.
    """

    id: str
    split: str = "train"
    instruction: str = ""
    gold_actions: list[Action] = field(default_factory=list)
    required_outputs: list[str] = field(default_factory=list)
    privileged: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Review:
    """A critic's judgement of one proposed action."""

    verdict: str = APPROVE
    feedback: str = ""
    score: float | None = None
    parsed: bool = True
    """False when the critic's output could not be parsed and the verdict is the configured default."""
    num_tokens: int = 0
    """Tokens the critic generated for this review (0 for critics that generate nothing)."""

    @property
    def approved(self) -> bool:
        return self.verdict == APPROVE


@dataclass(frozen=True)
class ReviewExample:
    """A worked review that a few-shot critic reads before its request (`MultiTurnEnv.review_examples`).

    `messages` is the conversation before the proposal, without a system message (the policy is
    the reviewed conversation's); `action` is the proposal; `verdict` and `feedback` are the ideal
    answer. The env gives the verdict, not the answer's text: the answer format belongs to the
    review room (`review.format.format_verdict`), which writes it.
    """

    messages: tuple[Message, ...]
    action: Action
    verdict: str
    feedback: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in (APPROVE, REVISE):
            raise ValueError(f"ReviewExample.verdict must be {APPROVE!r} or {REVISE!r}, got {self.verdict!r}")


@dataclass
class Proposal:
    """One candidate action from the actor within a turn, and the critic's review of it."""

    text: str
    action: Action | None
    parse_error: str | None = None
    review: Review | None = None
    num_tokens: int = 0
    label: dict[str, Any] | None = None
    """The env's own judgement of this proposal before it was sent (`deviation`, `violation`),
    from `env.check_action`, for scoring critics; None when the env cannot judge."""


@dataclass
class Turn:
    """One agent step: the action that reached the env and what came back.

    For local models, `prompt_ids` are the context tokens new at this turn (rendered by the
    chat template: user, tool and template tokens), `completion_ids` the tokens the model
    generated, and `logprobs` their log-probabilities under the sampling policy. Turn t's
    context is the first `prefix_len` tokens of the earlier turns' concatenated
    `prompt_ids + completion_ids` (all of them when None), then its `prompt_ids`: exactly
    the tokens the actor saw. `prefix_len` is set when the context dropped tokens the record
    holds (after a revised turn, the rejected proposal and the feedback), and is 0 where the
    local backend started the conversation afresh (the first turn).
    """

    index: int
    text: str
    action: Action | None
    parse_error: str | None = None
    observation: list[Message] = field(default_factory=list)
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    proposals: list[Proposal] = field(default_factory=list)
    prompt_ids: list[int] = field(default_factory=list)
    completion_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    prefix_len: int | None = None


@dataclass
class Trajectory:
    """A whole episode: the full conversation as the actor saw it, turn by turn."""

    task_id: str
    split: str = "train"
    messages: list[Message] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    reward: float = 0.0
    success: bool = False
    truncated: bool = False
    seed: int = 0
    trial: int = 0
    privileged: str = ""
    """The env's privileged information about the task (`MultiTurnEnv.privileged`): what only a
    privileged critic may read. Recorded once when the episode starts; never shown to the actor."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def turn_rewards(self) -> list[float]:
        return [t.reward for t in self.turns]

    def state_boundaries(self) -> list[int]:
        """Message counts that end the states s_0..s_T (T = number of turns).

        s_t holds the opening messages and turns 0..t-1 with their observations, so turn t's
        assistant message is `messages[bounds[t]]`.
        """
        n_open = len(self.messages) - sum(1 + len(t.observation) for t in self.turns)
        if n_open < 0:
            raise ValueError(f"trajectory {self.task_id}: its turns hold more messages than the conversation")
        bounds = [n_open]
        for t in self.turns:
            bounds.append(bounds[-1] + 1 + len(t.observation))
        return bounds


@dataclass
class CriticExample:
    """One supervised example for a generative critic: a context, a proposed action, the answer.

    `messages` is the conversation the actor saw before proposing (the policy is its system
    message); `text` and `action` are the proposal; `verdict` (approve or revise) and
    `feedback` are what the critic should say. `source` names the labeler (`gold` plan or
    counterfactual `branch`); `split` is the critic dataset's split (`train` or `validation`,
    assigned by task); `info` keeps the labeler's evidence (the rule broken, branch success rates).
    """

    task_id: str
    messages: list[Message] = field(default_factory=list)
    text: str = ""
    action: Action | None = None
    verdict: str = APPROVE
    feedback: str = ""
    source: str = "gold"
    split: str = "train"
    privileged: str = ""
    info: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- serialization

T = TypeVar("T")


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-ready dict of any dataclass above; fields that are None by default and None now are
    left out, so lines stay short and `from_dict` restores them exactly."""
    return _encode(obj)


def _encode(x: Any) -> Any:
    if is_dataclass(x) and not isinstance(x, type):
        out = {}
        for f in fields(x):
            v = getattr(x, f.name)
            if v is None and f.default is None:
                continue
            out[f.name] = _encode(v)
        return out
    if isinstance(x, dict):
        return {k: _encode(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_encode(v) for v in x]
    return x


def from_dict(cls: type[T], d: dict[str, Any]) -> T:
    """Rebuild a dataclass of this module from `to_dict` output; raises on unknown keys."""
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)} for {cls.__name__}")
    kwargs = {}
    for k, v in d.items():
        sub = _SUBTYPES.get((cls.__name__, k))
        if sub is None or v is None:
            kwargs[k] = v
        elif isinstance(v, list):
            kwargs[k] = [from_dict(sub, x) for x in v]
        else:
            kwargs[k] = from_dict(sub, v)
    return cls(**kwargs)


_SUBTYPES: dict[tuple[str, str], type] = {
    ("Message", "tool_calls"): ToolCall,
    ("Task", "gold_actions"): Action,
    ("Proposal", "action"): Action,
    ("Proposal", "review"): Review,
    ("Turn", "action"): Action,
    ("Turn", "observation"): Message,
    ("Turn", "proposals"): Proposal,
    ("Trajectory", "messages"): Message,
    ("Trajectory", "turns"): Turn,
    ("CriticExample", "messages"): Message,
    ("CriticExample", "action"): Action,
}


class JSONLError(UserError, ValueError):
    """A line of a JSONL file could not be read; the message names the file and line.

    A `UserError`, so the CLI prints it as one line instead of a traceback."""


def write_jsonl(path: str | os.PathLike, items: Iterable[Any], append: bool = True) -> int:
    """Write dataclasses (or dicts) one per line; appends by default so nothing is lost.

    Each line is flushed as written, so a killed writer leaves every finished line intact.
    Returns the number of lines written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a" if append else "w", encoding="utf-8") as f:
        for item in items:
            d = item if isinstance(item, dict) else to_dict(item)
            f.write(json.dumps(d, ensure_ascii=False, sort_keys=True) + "\n")
            f.flush()
            n += 1
    return n


def iter_jsonl(path: str | os.PathLike, cls: type[T] | None = None) -> Iterator[T]:
    """Yield one item per non-empty line; a corrupt line raises `JSONLError` naming file:line."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                yield d if cls is None else from_dict(cls, d)
            except (json.JSONDecodeError, TypeError, ValueError, KeyError) as e:
                what = cls.__name__ if cls is not None else "JSON"
                raise JSONLError(
                    f"{path}:{lineno}: not a valid {what} line ({e}). Fix or delete that line and rerun."
                ) from e


def read_jsonl(path: str | os.PathLike, cls: type[T] | None = None) -> list[T]:
    """All items of a JSONL file (see `iter_jsonl`)."""
    return list(iter_jsonl(path, cls))
