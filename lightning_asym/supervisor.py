"""`Supervisor`: runtime supervision of a live conversation, outside any Trainer.

An application holds the conversation; each time the agent should act, it asks the
supervisor, which has the actor propose, the critic review, and the actor revise on
feedback (up to `max_revisions`), exactly as the rollout engine does during evaluation::

    from lightning_asym import Supervisor
    from lightning_asym.backends import TransformersBackend
    from lightning_asym.review import RetailRuleCritic

    sup = Supervisor(TransformersBackend("smollm2"), RetailRuleCritic(), precision="bf16-mixed")
    result = sup.step(messages, tools=tool_schemas, task=task)
    result.action        # the approved (or fallback) action to execute
    result.proposals     # every proposal with its review

Local models are placed and cast by Lightning Fabric (`accelerator`, `precision`): an actor or
reviewer that holds torch modules says so by implementing `HoldsModules.setup_modules`
(`TransformersBackend` does; `GenerativeCritic` passes it on to its backend), and the supervisor
hands it `fabric.setup_module`. API backends and rule critics hold none and are used as they are.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from torch import nn

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.review.base import Reviewer, StatefulReviewer
from lightning_asym.rollout.supervision import SupervisionConfig, supervise_step
from lightning_asym.types import Action, Message, Proposal, Task


@runtime_checkable
class HoldsModules(Protocol):
    """An actor or reviewer holding torch modules that a launcher should place and wrap.

    `setup_modules(setup)` replaces each module `m` it holds (and every reference to it) with
    `setup(m)`; the `Supervisor` passes `fabric.setup_module`. Objects without torch modules
    (API backends, rule critics) do not implement it.
    """

    def setup_modules(self, setup: Callable[[nn.Module], nn.Module]) -> None: ...


@dataclass
class SupervisedStep:
    """What the supervisor decided for one turn."""

    action: Action | None
    """The action to execute (None if the actor's output could not be parsed)."""
    text: str
    """The actor's raw output for that action."""
    proposals: list[Proposal] = field(default_factory=list)
    """Every proposal of this turn, in order, with the critic's review."""

    @property
    def approved(self) -> bool:
        """Whether the critic approved the action that goes out (False after a fallback)."""
        return (
            bool(self.proposals)
            and self.proposals[-1].review is not None
            and self.proposals[-1].review.approved
        )

    @property
    def revisions(self) -> int:
        return max(len(self.proposals) - 1, 0)


class Supervisor:
    """Supervise a fixed actor with a reviewer, one turn at a time.

    Args:
        actor: any `ChatBackend` (local transformers model, OpenAI-compatible endpoint, ...).
        reviewer: any `Reviewer` (rule critic, generative critic on a local or API model).
        max_revisions: revisions allowed per turn after a `revise` verdict.
        fallback: when the budget is spent: `last`, `first`, or `block` (a holding reply).
        privileged: pass `privileged=` information of `step` on to the reviewer.
        sampling: the actor's sampling parameters (default: the backend's own).
        accelerator, precision: Lightning Fabric settings for local models ("auto", "cpu",
            "cuda"; "32-true", "bf16-mixed", "bf16-true", ...).
    """

    def __init__(
        self,
        actor: ChatBackend,
        reviewer: Reviewer,
        *,
        max_revisions: int = 2,
        fallback: str = "last",
        privileged: bool = False,
        sampling: SamplingParams | None = None,
        accelerator: str = "auto",
        precision: str | int = "32-true",
    ) -> None:
        from lightning.fabric import Fabric

        self.actor, self.reviewer, self.sampling = actor, reviewer, sampling
        self.config = SupervisionConfig(max_revisions=max_revisions, fallback=fallback, privileged=privileged)
        self.fabric = Fabric(accelerator=accelerator, devices=1, precision=precision)
        for holder in (actor, reviewer):
            if isinstance(holder, HoldsModules):
                holder.setup_modules(self.fabric.setup_module)
        self._started: set[Hashable] = set()
        self._anonymous = itertools.count()

    def step(
        self,
        messages: Sequence[Message | dict[str, Any]],
        tools: list[dict[str, Any]] | None = None,
        *,
        task: Task | None = None,
        privileged: str | None = None,
        key: Hashable | None = None,
        seed: int = 0,
    ) -> SupervisedStep:
        """The next action for the conversation `messages` (`Message`s or OpenAI-style dicts).

        Pass the same `key` on every turn of one conversation so a local actor keeps its KV
        cache (and a scripted actor its plan); call `end(key)` when the conversation is over.
        `task` is what the critic may know about the request (a rule critic reads its data);
        `privileged` reaches the critic only if the supervisor was built with `privileged=True`.
        """
        msgs = [m if isinstance(m, Message) else Message.from_openai(m) for m in messages]
        if key is None:
            key = f"supervisor-{next(self._anonymous)}"
            transient = True
        else:
            transient = False
        task = task or Task(id=str(key))
        if key not in self._started:
            self.actor.start(key, task)
            self._started.add(key)
        tools = tools or []
        with self.fabric.autocast():
            first = self.actor.complete([msgs], tools, self.sampling, keys=[key], seeds=[seed])
            chosen, history = supervise_step(
                live_messages=[msgs],
                tasks=[task],
                privileged=[privileged or ""],
                completions=first,
                actor=self.actor,
                reviewer=self.reviewer,
                tools=tools,
                sampling=self.sampling,
                keys=[key],
                seeds=[seed],
                config=self.config,
            )
        if transient:
            self.end(key)
        return SupervisedStep(chosen[0].action, chosen[0].text, history[0])

    def end(self, key: Hashable) -> None:
        """Forget a finished conversation's state (the actor's KV cache or plan, and the
        reviewer's, for a `StatefulReviewer` such as a scoring `GenerativeCritic`)."""
        self._started.discard(key)
        self.actor.release([key])
        if isinstance(self.reviewer, StatefulReviewer):
            self.reviewer.release([key])
