"""Rebuild an episode's state at a turn, and start episodes from such prefixes.

An episode is a pure function of its env seed and the actions taken (the scripted user is
deterministic given the seed), so `replay` rebuilds the env at any turn of a recorded
trajectory: `env.fork(); env.reset(task, traj.seed)`, then the earlier actions. It checks
each observation against the recording and raises `ReplayMismatch` where they differ (an
LLM user, or an env that is not deterministic), so nothing is labelled on a wrong state.

`start_from` turns a `Prefix` into an `Episode` of the rollout engine
(`RolloutEngine.start_episode` with the replayed env, the recorded messages and turns), and
`RolloutEngine.play` plays such episodes on to the end like fresh ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.rollout.engine import Episode, RolloutEngine
from lightning_asym.types import Action, Task, Trajectory


class ReplayMismatch(RuntimeError):
    """Replaying a trajectory's actions did not reproduce its observations."""


def replay(
    env: MultiTurnEnv, task: Task, traj: Trajectory, upto: int
) -> tuple[MultiTurnEnv, list[list[Action]] | None]:
    """A fresh env in the state before turn `upto` of `traj`, and the plan before each turn.

    The plan is the env's `plan()` (its remaining gold actions) before turns 0..upto, or None
    for envs that keep no plan. Parse-error turns never reached the env, so they are not stepped.
    """
    e = env.fork()
    e.reset(task, traj.seed)
    has_plan = e.plan() is not None
    plans: list[list[Action]] = []
    for turn in traj.turns[: upto + 1]:
        if has_plan:
            plans.append(e.plan() or [])
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


def start_from(engine: RolloutEngine, prefix: Prefix, key: str) -> Episode:
    """An episode that goes on from `prefix` (its env replayed, its messages and turns kept).

    The trajectory's `seed` is the prefix's sampling seed and `info["env_seed"]` the recorded
    episode's; raises `ReplayMismatch` when the prefix cannot be rebuilt.
    """
    p = prefix
    env, _ = replay(engine.env, p.task, p.traj, p.turn)
    cut = p.traj.state_boundaries()[p.turn]
    ep = engine.start_episode(
        p.task,
        p.traj.trial,
        key=key,
        env=env,
        messages=p.traj.messages[:cut],
        turns=p.traj.turns[: p.turn],
        seed=p.seed,
    )
    ep.traj.info.update(env_seed=p.traj.seed, prefix_turns=p.turn, branch=p.name)
    return ep
