"""The rollout engine: many episodes in lock-step, one batched backend call per step.

Every live episode proposes its next action in the same `actor.complete` call; finished
episodes leave the batch, so the batch shrinks rather than waiting on padding. Each
episode's sampling seed is derived from `(seed, task.id, trial)`, never from its position in
the batch, so the same seed and config give the same trajectories whatever the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.toolcalls import FORMAT_HINT
from lightning_asym.envs.base import MultiTurnEnv, StepResult
from lightning_asym.review.base import StatefulReviewer
from lightning_asym.rollout.supervision import Reviewer, SupervisionConfig, supervise_step
from lightning_asym.types import Message, ReviewExample, Task, Trajectory, Turn

PARSE_ERROR_HINT = FORMAT_HINT[0].upper() + FORMAT_HINT[1:] + "."


def episode_seed(seed: int, task_id: str, trial: int) -> int:
    """A stable 31-bit seed for one episode (independent of batch order and Python's hash salt)."""
    digest = hashlib.sha256(f"{seed}/{task_id}/{trial}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class Episode:
    """One episode in play: its env (a fork of the engine's), its trajectory so far, its actor key.

    Made by `RolloutEngine.start_episode`, either fresh (`env.reset`) or from a recorded prefix;
    `RolloutEngine.play` runs a list of them to the end in lock-step.
    """

    key: str
    task: Task
    env: MultiTurnEnv
    traj: Trajectory
    done: bool = False


class RolloutEngine:
    """Runs multi-turn episodes of `env` with an actor and, optionally, a reviewer.

    `run`/`collect` play fresh episodes; `start_episode` + `play` also start episodes from a
    recorded prefix (critic data generation branches from them).

    Args:
        env: the domain; each episode runs on its own `env.fork()`.
        max_turns: truncate episodes after this many agent turns (default: `env.max_turns`).
        sampling: the actor's sampling parameters (default: the backend's own).
        seed: base seed; episode seeds derive from it, the task id and the trial number.
        supervision: revision budget and fallback when a reviewer supervises actions.
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
        # called after each lock-step of `play` as (episodes ended, episodes in the play, lock-steps
        # so far): progress bars
        self.on_progress: Callable[[int, int, int], None] | None = None
        self._review_examples: tuple[ReviewExample, ...] | None = None

    @property
    def review_examples(self) -> tuple[ReviewExample, ...]:
        """The env's worked reviews, asked once: every review request of this engine carries the
        same tuple, so a few-shot critic's prompt opening (and its cache) stays the same."""
        if self._review_examples is None:
            self._review_examples = tuple(self.env.review_examples())
        return self._review_examples

    def collect(
        self,
        tasks: Sequence[Task],
        actor: ChatBackend,
        reviewer: Reviewer | None = None,
        *,
        trials: int = 1,
        first_trial: int = 0,
    ) -> list[Trajectory]:
        """Run `trials` episodes of each task; returns trajectories task-major, trial-minor."""
        specs = [(task, first_trial + k) for task in tasks for k in range(trials)]
        return self.run(specs, actor, reviewer)

    def run(
        self, specs: Sequence[tuple[Task, int]], actor: ChatBackend, reviewer: Reviewer | None = None
    ) -> list[Trajectory]:
        """Run one fresh episode per `(task, trial)` in lock-step; returns them in the given order."""
        return self.play(
            [
                self.start_episode(task, trial, key=f"{task.id}#{trial}#{i}")
                for i, (task, trial) in enumerate(specs)
            ],
            actor,
            reviewer,
        )

    def start_episode(
        self,
        task: Task,
        trial: int = 0,
        *,
        key: str | None = None,
        env: MultiTurnEnv | None = None,
        messages: Sequence[Message] | None = None,
        turns: Sequence[Turn] = (),
        seed: int | None = None,
    ) -> Episode:
        """An episode of `task` ready for `play`.

        Fresh by default: a fork of the engine's env, reset with the episode seed
        `episode_seed(self.seed, task.id, trial)`. To go on from a recorded prefix, pass the
        `env` already in the prefix's state (e.g. from `datagen.prefix.replay`, which the
        episode then owns and closes), the prefix's `messages` and its `turns`; `seed` then sets
        the sampling seed of the new turns (the env keeps its own state).

        `key` names the episode for the actor's `start`/`release` hooks and KV cache; it must
        be unique among the episodes played together (default `"{task.id}#{trial}"`).
        """
        if (env is None) != (messages is None):
            raise ValueError("start_episode: pass both env and messages to start from a prefix, or neither")
        env_seed = episode_seed(self.seed, task.id, trial)
        if env is None:
            env = self.env.fork()
            messages = env.reset(task, env_seed)
        traj = Trajectory(
            task_id=task.id,
            split=task.split,
            messages=list(messages),  # type: ignore[arg-type]
            turns=list(turns),
            seed=env_seed if seed is None else seed,
            trial=trial,
            privileged=self.env.privileged(task),
            info={"actor_tokens": 0, "actor_prompt_tokens": 0, "critic_tokens": 0},
        )
        return Episode(key if key is not None else f"{task.id}#{trial}", task, env, traj)

    def play(
        self, episodes: Sequence[Episode], actor: ChatBackend, reviewer: Reviewer | None = None
    ) -> list[Trajectory]:
        """Play `episodes` to the end in lock-step, one batched `actor.complete` per step, with
        `reviewer` (if any) supervising each proposed action; returns their trajectories in order.

        Each episode's env is closed and its key released (actor, and a `StatefulReviewer`) when it ends.
        """
        keys = [ep.key for ep in episodes]
        if len(set(keys)) != len(keys):
            raise ValueError("play: episode keys must be distinct (start_episode(key=...))")
        for ep in episodes:
            actor.start(ep.key, ep.task)
        tools = self.env.tool_schemas
        live = [ep for ep in episodes if not ep.done]
        steps = 0
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
            if reviewer is not None:
                completions, proposals = supervise_step(
                    live_messages=convs,
                    tasks=[ep.task for ep in live],
                    privileged=[ep.traj.privileged for ep in live],
                    completions=completions,
                    actor=actor,
                    reviewer=reviewer,
                    tools=tools,
                    sampling=self.sampling,
                    keys=keys,
                    seeds=seeds,
                    config=self.supervision,
                    judges=[ep.env.check_action for ep in live],
                    examples=self.review_examples,
                )
            for ep, comp, props in zip(live, completions, proposals):
                self._advance(ep, comp, props)
            finished = [ep for ep in live if ep.done]
            if finished:
                actor.release([ep.key for ep in finished])
                if isinstance(reviewer, StatefulReviewer):  # e.g. a critic's per-episode prompt cache
                    reviewer.release([ep.key for ep in finished])
                for ep in finished:
                    ep.env.close()
            live = [ep for ep in live if not ep.done]
            steps += 1
            if self.on_progress is not None:
                self.on_progress(len(episodes) - len(live), len(episodes), steps)
        return [ep.traj for ep in episodes]

    def _advance(self, ep: Episode, comp: Completion, proposals: list) -> None:
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
                prefix_len=comp.prefix_len,
            )
        )
        if result.done or len(traj.turns) >= self.max_turns:
            ep.done = True
            # cut by the engine's max_turns, or by the env's own limit (it may still score the cut, as retail does)
            traj.truncated = not result.done or bool(result.info.get("truncated", False))
            traj.reward = float(sum(t.reward for t in traj.turns))
            traj.success = bool(result.info.get("success", False)) and result.done
