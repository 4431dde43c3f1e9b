"""The rollout engine: many episodes in lock-step, one batched backend call per step.

Every live episode proposes its next action in the same `actor.complete` call; finished
episodes leave the batch, so the batch shrinks rather than waiting on padding. Each
episode's sampling seed is derived from `(seed, task.id, trial)`, never from its position in
the batch, so the same seed and config give the same trajectories whatever the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.envs.base import MultiTurnEnv, StepResult
from lightning_asym.rollout.supervision import Reviewer, SupervisionConfig, supervise_step
from lightning_asym.types import Message, Task, Trajectory, Turn

PARSE_ERROR_HINT = (
    'To call a tool write <tool_call>{"name": ..., "arguments": {...}}</tool_call>; '
    "any other text is sent to the user."
)


def episode_seed(seed: int, task_id: str, trial: int) -> int:
    """A stable 31-bit seed for one episode (independent of batch order and Python's hash salt)."""
    digest = hashlib.sha256(f"{seed}/{task_id}/{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class _Episode:
    key: str
    task: Task
    env: MultiTurnEnv
    traj: Trajectory
    done: bool = False
    last_info: dict[str, Any] = field(default_factory=dict)


class RolloutEngine:
    """Runs multi-turn episodes of `env` with an actor and, optionally, a reviewing critic.

    Args:
        env: the domain; each episode runs on its own `env.fork()`.
        max_turns: truncate episodes after this many agent turns (default: `env.max_turns`).
        sampling: the actor's sampling parameters (default: the backend's own).
        seed: base seed; episode seeds derive from it, the task id and the trial number.
        supervision: revision budget and fallback when a critic reviews actions.
    """

    def __init__(
        self,
        env: MultiTurnEnv,
        max_turns: int | None = None,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        supervision: SupervisionConfig | None = None,
    ) -> None:
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.env = env
        self.max_turns = max_turns or env.max_turns
        self.sampling = sampling
        self.seed = seed
        self.supervision = supervision or SupervisionConfig()

    def collect(
        self,
        tasks: Sequence[Task],
        actor: ChatBackend,
        critic: Reviewer | None = None,
        *,
        trials: int = 1,
        first_trial: int = 0,
    ) -> list[Trajectory]:
        """Run `trials` episodes of each task; returns trajectories task-major, trial-minor."""
        specs = [(task, first_trial + k) for task in tasks for k in range(trials)]
        return self.run(specs, actor, critic)

    def run(
        self, specs: Sequence[tuple[Task, int]], actor: ChatBackend, critic: Reviewer | None = None
    ) -> list[Trajectory]:
        """Run one episode per `(task, trial)` in lock-step; returns them in the given order."""
        episodes = [self._start(task, trial, i, actor) for i, (task, trial) in enumerate(specs)]
        tools = self.env.tool_schemas
        live = list(episodes)
        while live:
            convs = [ep.traj.messages for ep in live]
            keys = [ep.key for ep in live]
            seeds = [ep.traj.seed + len(ep.traj.turns) for ep in live]
            completions = actor.complete(convs, tools, self.sampling, keys=keys, seeds=seeds)
            if len(completions) != len(live):
                raise RuntimeError(
                    f"{type(actor).__name__}.complete returned {len(completions)} "
                    f"completions for {len(live)} conversations"
                )
            proposals: list[list] = [[] for _ in live]
            if critic is not None:
                completions, proposals = supervise_step(
                    live_messages=convs,
                    tasks=[ep.task for ep in live],
                    privileged=[self.env.privileged(ep.task) for ep in live],
                    completions=completions,
                    actor=actor,
                    critic=critic,
                    tools=tools,
                    sampling=self.sampling,
                    keys=keys,
                    seeds=seeds,
                    config=self.supervision,
                    judges=[getattr(ep.env, "check_action", None) for ep in live],
                )
            for ep, comp, props in zip(live, completions, proposals):
                self._advance(ep, comp, props)
            finished = [ep for ep in live if ep.done]
            if finished:
                actor.release([ep.key for ep in finished])
                for ep in finished:
                    ep.env.close()
            live = [ep for ep in live if not ep.done]
        return [ep.traj for ep in episodes]

    def _start(self, task: Task, trial: int, index: int, actor: ChatBackend) -> _Episode:
        seed = episode_seed(self.seed, task.id, trial)
        env = self.env.fork()
        messages = env.reset(task, seed)
        key = f"{task.id}#{trial}#{index}"
        actor.start(key, task)
        traj = Trajectory(
            task_id=task.id,
            split=task.split,
            messages=list(messages),
            seed=seed,
            trial=trial,
            info={"actor_tokens": 0, "actor_prompt_tokens": 0, "critic_tokens": 0},
        )
        return _Episode(key, task, env, traj)

    def _advance(self, ep: _Episode, comp: Completion, proposals: list) -> None:
        traj = ep.traj
        index = len(traj.turns)
        # every proposal cost actor tokens, not only the one that went out
        traj.info["actor_tokens"] += (
            sum(p.num_tokens for p in proposals) if proposals else comp.num_completion_tokens
        )
        traj.info["actor_prompt_tokens"] += comp.num_prompt_tokens
        traj.info["critic_tokens"] += sum(p.review.num_tokens for p in proposals if p.review is not None)
        call_id = f"call_{index}"
        if comp.action is None:
            assistant = Message("assistant", content=comp.text)
            result = StepResult(
                [Message("user", content=f"Error: {comp.parse_error}. {PARSE_ERROR_HINT}")],
                info={"error": comp.parse_error, "parse_error": True},
            )
        else:
            assistant = comp.action.to_message(call_id, text=comp.text)
            result = ep.env.step(comp.action)
            for m in result.messages:
                if m.role == "tool" and m.tool_call_id is None and not comp.action.is_reply:
                    m.tool_call_id = call_id
        traj.messages.append(assistant)
        traj.messages.extend(result.messages)
        traj.turns.append(
            Turn(
                index=index,
                text=comp.text,
                action=comp.action,
                parse_error=comp.parse_error,
                observation=list(result.messages),
                reward=float(result.reward),
                done=result.done,
                info=dict(result.info),
                proposals=proposals,
                prompt_ids=list(comp.prompt_ids),
                completion_ids=list(comp.completion_ids),
                logprobs=list(comp.logprobs),
            )
        )
        if result.done or len(traj.turns) >= self.max_turns:
            ep.done = True
            traj.truncated = not result.done
            traj.reward = float(sum(t.reward for t in traj.turns))
            traj.success = bool(result.info.get("success", False)) and result.done
