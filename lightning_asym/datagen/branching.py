"""Counterfactual branching: re-roll the fixed actor from a turn's prefix and compare outcomes.

For a failed trajectory of a hard task we pick a few turns (`select_turns`: the first
deviation and some earlier turns), rebuild the episode at each one, let the actor play
on `m` times from there with fresh sampling seeds, and group the re-rolls by their first
action. The recorded action is one more sample (its continuation is the recording). Each
distinct action's success rate decides its label (`labels.branch_labels`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass

from lightning_asym.backends.base import ChatBackend
from lightning_asym.datagen.labels import Sample, branch_labels, deviated, first_deviation
from lightning_asym.datagen.prefix import Prefix, ReplayMismatch, replay, start_from
from lightning_asym.review.format import render_transcript
from lightning_asym.rollout.engine import RolloutEngine, episode_seed
from lightning_asym.types import CriticExample, Task, Trajectory


def select_turns(traj: Trajectory, n: int, seed: int = 0) -> list[int]:
    """Up to `n` turns of `traj` to branch from, in order: its first deviation (if any) and
    turns drawn at random (seeded by task and trial) from those before it.

    Where the env judges actions (`deviation` in the step info) but saw no deviation in this
    failed episode, the mistake lies in what it cannot judge, free text, so the turns are
    drawn from the replies.
    """
    if n < 1:
        return []
    stop = first_deviation(traj)
    end = stop if stop is not None else len(traj.turns)
    pool = [t.index for t in traj.turns[:end] if t.action is not None]
    if stop is None and any("deviation" in t.info for t in traj.turns):
        pool = [i for i in pool if traj.turns[i].action.is_reply] or pool
    picked = [stop] if stop is not None else []
    rng = random.Random(f"{seed}/{traj.task_id}/{traj.trial}")
    picked += rng.sample(pool, min(n - len(picked), len(pool)))
    return sorted(picked)


def prefix_key(traj: Trajectory, turn: int) -> str:
    """Identifies a prefix by its content: trials that agree up to `turn` share one branch point."""
    text = render_transcript(traj.messages[: traj.state_boundaries()[turn]])
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class BranchStats:
    """What branching did for one task."""

    points: int = 0
    """Branch points labelled."""
    rollouts: int = 0
    """Re-rolls played."""
    mismatches: int = 0
    """Branch points skipped because their prefix could not be replayed."""


def branch(
    engine: RolloutEngine,
    actor: ChatBackend,
    failed: Sequence[tuple[Task, Trajectory]],
    *,
    rollouts: int,
    turns: int,
    margin: float = 0.1,
    seed: int = 0,
    privileged: dict[str, str] | None = None,
) -> tuple[dict[str, list[CriticExample]], dict[str, BranchStats]]:
    """Branch from `turns` turns of each failed trajectory, `rollouts` re-rolls each, in one
    lock-step batch; returns the examples and what was done, both per task id.

    Prefixes that several trajectories share are branched once. A prefix that cannot be
    replayed (`ReplayMismatch`) is skipped and counted in `mismatches`.
    """
    stats: dict[str, BranchStats] = {task.id: BranchStats() for task, _ in failed}
    points: list[tuple[Task, Trajectory, int]] = []
    seen: set[tuple[str, str]] = set()
    for task, traj in failed:
        for t in select_turns(traj, turns, seed):
            key = (task.id, prefix_key(traj, t))
            if key in seen:
                continue
            seen.add(key)
            try:  # check once per point that the prefix can be rebuilt
                env, _ = replay(engine.env, task, traj, t)
                env.close()
            except ReplayMismatch:
                stats[task.id].mismatches += 1
                continue
            points.append((task, traj, t))
    prefixes: list[Prefix] = []
    owners: list[int] = []
    for i, (task, traj, t) in enumerate(points):
        name = f"{traj.trial}/{t}"
        for j in range(rollouts):
            s = episode_seed(seed, f"{task.id}/branch/{name}", j)
            prefixes.append(Prefix(task, traj, t, s, name=f"{name}/{j}"))
            owners.append(i)
    episodes = [start_from(engine, p, key=f"{p.task.id}#branch#{i}") for i, p in enumerate(prefixes)]
    rolls = engine.play(episodes, actor) if episodes else []
    by_point: dict[int, list[Trajectory]] = {}
    for r, o in zip(rolls, owners):
        by_point.setdefault(o, []).append(r)
    out: dict[str, list[CriticExample]] = {}
    for i, (task, traj, t) in enumerate(points):
        mine = by_point.get(i, [])
        turn = traj.turns[t]
        samples = [Sample(turn.text, turn.action, traj.success, deviated(turn.info))]
        samples += [
            Sample(r.turns[t].text, r.turns[t].action, r.success, deviated(r.turns[t].info))
            for r in mine
            if len(r.turns) > t
        ]
        priv = (privileged or {}).get(task.id, "")
        examples = branch_labels(traj, t, samples, margin, priv)
        stats[task.id].points += 1
        stats[task.id].rollouts += len(mine)
        out.setdefault(task.id, []).extend(examples)
    return out, stats
