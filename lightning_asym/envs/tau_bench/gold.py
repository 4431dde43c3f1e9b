"""A gold actor for τ-bench tasks: the task's gold tool calls in order, then one reply stating
the required outputs. With `TauScriptedUser` it replays a task offline; τ-bench's reward must
then be 1.0 (`tools/tau_bench_gold_replay.py`, `tests/test_tau_bench_real.py`)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from lightning_asym.backends.scripted import ScriptedBackend
from lightning_asym.backends.toolcalls import format_action
from lightning_asym.types import Action, Message, Task


def gold_policy(messages: Sequence[Message], task: Task | None, rng: random.Random) -> str:
    """The next gold action as text; calls already made are counted by their tool messages."""
    if task is None:
        return "Hello! How can I help you today?"
    calls = [a for a in task.gold_actions if not a.is_reply]
    made = sum(1 for m in messages if m.role == "tool")
    if made < len(calls):
        return format_action(calls[made])
    return format_action(Action.reply(" ".join(["Done.", *task.required_outputs])))


def gold_actor() -> ScriptedBackend:
    """A `ScriptedBackend` that plays `gold_policy`."""
    return TauGoldActor()


class TauGoldActor(ScriptedBackend):
    """`gold_policy` as a class, so YAML can name it (`configs/tau_bench/gold_replay.yaml`)."""

    def __init__(self) -> None:
        super().__init__(policy=gold_policy)
