"""The environment protocol every domain implements, and a registry so YAML can name one.

An env object holds a domain's configuration and its task cache; one episode's state lives
on a `fork()` of it, so the rollout engine can run many episodes of the same env in
lock-step. `reset` must create all per-episode state afresh (never mutate shared state).
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.types import Action, Message, ReviewExample, Task

SPLITS = ("train", "validation", "test")
"""The task splits of an env (`MultiTurnEnv.tasks(split)`); an env may leave some empty."""


@dataclass
class StepResult:
    """What `MultiTurnEnv.step` returns.

    `messages` are the observations to append to the conversation (tool results as `tool`
    messages, the user's reply as a `user` message). `reward` is this step's reward; most
    domains give it only on the final step. `info` may carry `"error"` (a malformed or
    refused action) and, on the final step, `"success"`.
    """

    messages: list[Message]
    reward: float = 0.0
    done: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class MultiTurnEnv(ABC):
    """A multi-turn domain: tasks, a user, tools, and a reward.

    Contract:
      * `tasks(split)` is deterministic given the env's seed;
      * `reset(task, seed)` returns the opening messages (system policy + first user message);
      * `step(action)` never raises on agent output: a malformed action, an unknown tool or
        bad arguments yield an error observation (`info["error"]`) and the episode goes on;
      * `privileged(task)` is the hidden information only a privileged critic may see;
      * `check_action(action)` is the env's own judgement of a proposed action in the current
        state, without applying it (None: this env does not judge);
      * `plan()` is what the env still expects the agent to do (None: it keeps no plan);
      * `review_examples()` are worked reviews of this domain for a few-shot critic (default: none).
    """

    name: str = "env"
    max_turns: int = 20

    @abstractmethod
    def tasks(self, split: str) -> list[Task]:
        """The tasks of a split (`train`, `validation` or `test`)."""

    @abstractmethod
    def reset(self, task: Task, seed: int = 0) -> list[Message]:
        """Start an episode of `task`; returns the opening messages."""

    @abstractmethod
    def step(self, action: Action) -> StepResult:
        """Apply the agent's action; returns observations, reward, done and info."""

    @property
    @abstractmethod
    def tool_schemas(self) -> list[dict[str, Any]]:
        """OpenAI function schemas of the agent's tools (without `respond`)."""

    def privileged(self, task: Task) -> str:
        """What only a privileged critic may see about `task` (the user's hidden goal...)."""
        return task.privileged

    def check_action(self, action: Action | None) -> dict[str, Any] | None:
        """The env's judgement of a proposed `action` (None: unparseable output) in the current
        state, without applying it: `{"deviation": bool, "violation": str | None}` (an env with
        named rules adds `rule`, the broken rule's id, e.g. `envs/retail/policy.py`), as `step`
        would put in its info. Supervision labels every proposal with it, so critics can be
        scored against the env; it never reaches the critic. The default, None, means this env
        does not judge actions (precision and recall are then not reported)."""
        return None

    def plan(self) -> list[Action] | None:
        """The actions the env still expects, in order, from the current state (the rest of the
        gold plan), or None for an env that keeps no plan. The labeler writes feedback from it."""
        return None

    def review_examples(self) -> tuple[ReviewExample, ...]:
        """Worked reviews of this domain that a few-shot critic reads before each request
        (`GenerativeCritic(few_shot=True)`): usually one action to revise and one to approve, each
        written with this env's tools (`fits_tools` checks that) and judged by its policy.

        The rollout engine asks once per env and passes the same tuple with every review request,
        so a critic's cached prompt opening stays valid (`review.scorer`); return a constant.
        The default is none: an example shows the critic a tool call and a verdict under a policy,
        and a domain-neutral one would show a tool the agent does not have and a rule the domain
        may not hold, which teaches a small critic the wrong thing. A few-shot critic without
        examples says so once and reviews zero-shot."""
        return ()

    def close(self) -> None:  # noqa: B027  (an optional hook, not abstract)
        """Release per-episode resources (an LLM user's KV cache...); called when an episode ends."""

    def corpus(self, num_tasks: int = 200) -> list[str]:
        """Typical texts of this domain, to train a small model's tokenizer on.

        The default plays the gold actions of the first train tasks and keeps every message,
        the actions as the agent would write them, and the tool descriptions.
        """
        from lightning_asym.backends.toolcalls import format_action, tools_prompt

        tools = tools_prompt(self.tool_schemas)
        texts = []
        for i, task in enumerate(self.tasks("train")[:num_tasks]):
            env = self.fork()
            # the tool descriptions ride along every episode's system message, as the model reads them
            texts += [tools] + [m.content or "" for m in env.reset(task, seed=i)]
            for action in task.gold_actions:
                texts.append(format_action(action))
                result = env.step(action)
                texts += [m.content or "" for m in result.messages]
                if result.done:
                    break
            env.close()
        return [t for t in texts if t]

    def fork(self) -> MultiTurnEnv:
        """A fresh env for one episode that shares configuration and task caches."""
        return copy.copy(self)

    def get_task(self, split: str, task_id: str) -> Task:
        """A task by id; the id index is built once per split (training looks tasks up per step)."""
        tasks = self.tasks(split)
        index = self.__dict__.setdefault("_task_index", {})
        cached = index.get(split)
        if cached is None or cached[0] is not tasks:  # rebuilt if the split's list was replaced
            cached = index[split] = (tasks, {t.id: t for t in tasks})
        try:
            return cached[1][task_id]
        except KeyError:
            raise KeyError(f"no task {task_id!r} in split {split!r} of env {self.name!r}") from None


def fits_tools(examples: Sequence[ReviewExample], tool_schemas: Sequence[dict[str, Any]]) -> bool:
    """Whether every example's action is a reply or a call of one of these tools with arguments the
    schema declares (so examples written for one domain can be checked against another's tools)."""
    params: dict[str, set[str]] = {}
    for schema in tool_schemas:
        fn = schema.get("function", schema)
        params[fn["name"]] = set(fn.get("parameters", {}).get("properties", {}))
    return all(
        ex.action.is_reply or (ex.action.name in params and set(ex.action.kwargs) <= params[ex.action.name])
        for ex in examples
    )


def error_result(message: str, **info: Any) -> StepResult:
    """The observation for a malformed or refused action: the episode goes on."""
    return StepResult([Message("tool", content=f"Error: {message}")], 0.0, False, {"error": message, **info})


_REGISTRY: dict[str, Callable[..., MultiTurnEnv]] = {}


def register_env(name: str) -> Callable[[type], type]:
    """Class decorator: `@register_env("preferences")` makes `make_env("preferences")` work."""

    def deco(cls: type) -> type:
        _REGISTRY[name] = cls
        return cls

    return deco


def make_env(name: str, **kwargs: Any) -> MultiTurnEnv:
    """Build a registered env by name."""
    if name not in _REGISTRY:
        raise KeyError(f"unknown env {name!r}; registered envs: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


def registered_envs() -> list[str]:
    return sorted(_REGISTRY)
