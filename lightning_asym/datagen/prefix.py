"""Rebuild an episode's state at a turn, and run episodes on from such prefixes.

An episode is a pure function of its env seed and the actions taken (the scripted user is
deterministic given the seed), so `replay` rebuilds the env at any turn of a recorded
trajectory: `env.fork(); env.reset(task, traj.seed)`, then the earlier actions. It checks
each observation against the recording and raises `ReplayMismatch` where they differ (an
LLM user, or an env that is not deterministic), so nothing is labelled on a wrong state.

`PrefixEngine` is the rollout engine with one change: its episodes start from a given
prefix (a replayed env, the recorded messages and turns) instead of `reset`, and the
engine's own loop plays them to the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lightning_asym.backends.base import ChatBackend
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.rollout.engine import RolloutEngine, _Episode
from lightning_asym.types import Action, Task, Trajectory


class ReplayMismatch(RuntimeError):
    """Replaying a trajectory's actions did not reproduce its observations."""


def replay(
    env: MultiTurnEnv, task: Task, traj: Trajectory, upto: int
) -> tuple[MultiTurnEnv, list[list[Action]] | None]:
    """A fresh env in the state before turn `upto` of `traj`, and the plan before each turn.

    The plan is the env's remaining gold actions (`_remaining`, kept by `RetailEnv`) before
    turns 0..upto, or None for envs that keep no plan. Parse-error turns never reached the
    env, so they are not stepped.
    """
    e = env.fork()
    e.reset(task, traj.seed)
    has_plan = isinstance(getattr(e, "_remaining", None), list)
    plans: list[list[Action]] = []
    for turn in traj.turns[: upto + 1]:
        if has_plan:
            plans.append(list(e._remaining))  # type: ignore[attr-defined]
        if turn.index == upto:
            break
        if turn.action is None:
            continue
        result = e.step(turn.action)
        got = [(m.role, m.content) for m in result.messages]
        want = [(m.role, m.content) for m in turn.observation]
        if got != want:
            e.close()
            raise ReplayMismatch(
                f"task {task.id} trial {traj.trial}: replaying turn {turn.index} gave {got[:1]!r}, "
                f"the recording has {want[:1]!r}"
            )
    return e, (plans if has_plan else None)


@dataclass
class Prefix:
    """Where one re-roll starts: turn `turn` of `traj`, sampled with its own `seed`."""

    task: Task
    traj: Trajectory
    turn: int
    seed: int
    name: str = ""


class PrefixEngine(RolloutEngine):
    """A `RolloutEngine` whose episodes may start from recorded prefixes (see `run_from`);
    `run` and `collect` behave as the plain engine's."""

    _prefixes: Sequence[Prefix] = ()

    def run_from(self, prefixes: Sequence[Prefix], actor: ChatBackend) -> list[Trajectory]:
        """Play each prefix on to the end, all in lock-step; returns them in order.

        A returned trajectory holds the prefix's messages and turns followed by the new ones;
        its `seed` is the prefix's sampling seed and `info["env_seed"]` the episode's seed.
        Raises `ReplayMismatch` when a prefix cannot be rebuilt.
        """
        self._prefixes = list(prefixes)
        try:
            return self.run([(p.task, i) for i, p in enumerate(self._prefixes)], actor, None)
        finally:
            self._prefixes = ()

    def _start(self, task: Task, trial: int, index: int, actor: ChatBackend) -> _Episode:
        ep = super()._start(task, trial, index, actor)  # the engine's own bookkeeping and actor.start
        if not self._prefixes:  # a plain `run`/`collect`
            return ep
        p = self._prefixes[index]
        ep.env.close()
        ep.env, _ = replay(self.env, task, p.traj, p.turn)
        cut = p.traj.state_boundaries()[p.turn]
        ep.traj.messages = list(p.traj.messages[:cut])
        ep.traj.turns = list(p.traj.turns[: p.turn])
        ep.traj.seed = p.seed  # sampling seeds derive from it; the env keeps the episode's seed
        ep.traj.trial = p.traj.trial
        ep.traj.info.update(env_seed=p.traj.seed, prefix_turns=p.turn, branch=p.name)
        return ep
