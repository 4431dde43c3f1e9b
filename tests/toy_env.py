"""A tiny deterministic env for engine and CLI tests: guess the hidden number."""

from __future__ import annotations

from typing import Any

from lightning_asym.envs.base import MultiTurnEnv, StepResult, error_result
from lightning_asym.types import Action, Message, Task


class GuessEnv(MultiTurnEnv):
    """The user hides a number in [0, 9]; the agent may ask (reply) for hints and `guess(n)`."""

    name = "guess"

    def __init__(self, num_tasks: int = 6, max_turns: int = 5) -> None:
        self.num_tasks = num_tasks
        self.max_turns = max_turns

    def tasks(self, split: str) -> list[Task]:
        off = {"train": 0, "validation": 100, "test": 200}[split]
        return [
            Task(
                id=f"guess-{split}-{i}",
                split=split,
                instruction=str((i + off) % 10),
                gold_actions=[Action("guess", {"n": (i + off) % 10})],
                privileged=f"n={(i + off) % 10}",
            )
            for i in range(self.num_tasks)
        ]

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return [
            {
                "type": "function",
                "function": {
                    "name": "guess",
                    "description": "guess the number",
                    "parameters": {
                        "type": "object",
                        "properties": {"n": {"type": "integer"}},
                        "required": ["n"],
                    },
                },
            }
        ]

    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        self.target = int(task.instruction)
        self.turn = 0
        return [
            Message("system", content="Guess the user's number."),
            Message("user", content="Guess my number!"),
        ]

    def step(self, action: Action) -> StepResult:
        self.turn += 1
        if action.is_reply:
            hint = "higher" if self.target >= 5 else "lower"
            return StepResult([Message("user", content=f"It is {hint} than five.")])
        if action.name != "guess":
            return error_result(f"unknown tool {action.name!r}")
        n = action.kwargs.get("n")
        if not isinstance(n, int):
            return error_result("guess needs an integer argument 'n'")
        ok = n == self.target
        return StepResult(
            [Message("tool", content="correct" if ok else "wrong")], float(ok), True, {"success": ok}
        )


def guess_policy(messages, task, rng) -> str:
    """Asks once, then guesses a number consistent with the hint (right half the time)."""
    last = messages[-1].content or ""
    if "than five" not in last:
        return "Is it a big number?"
    lo = 5 if "higher" in last else 0
    n = rng.randint(lo, lo + 4)
    return f'<tool_call>{{"name": "guess", "arguments": {{"n": {n}}}}}</tool_call>'
