"""Self-play of a fixed actor, hard-task mining, and labeling: one batch of tasks in, examples out.

`generate` is the whole per-batch pipeline without Lightning: `k` trials of every task in
one lock-step batch, a task is *hard* when its pass rate is below `hard_threshold`, gold
labels come from the trajectories (`labels.gold_labels`), and the failed trajectories of
hard tasks are branched (`branching.branch`). A task's examples are deduplicated (trials
share their clean prefixes). The actor is only ever asked for actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.datagen.balance import dedupe
from lightning_asym.datagen.branching import branch
from lightning_asym.datagen.labels import first_deviation, gold_labels
from lightning_asym.datagen.prefix import ReplayMismatch, replay
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import CriticExample, Task, Trajectory

GOLD_TASKS = ("all", "hard")


@dataclass
class DataGenConfig:
    """How self-play, mining and labeling behave (the `CriticDataGen` arguments)."""

    trials: int = 4
    """Self-play episodes per task (k)."""
    hard_threshold: float = 0.5
    """A task is hard when its pass rate over the k trials is below this."""
    gold_tasks: str = "all"
    """Gold-label the trajectories of `all` tasks or of `hard` tasks only."""
    branch_rollouts: int = 4
    """Re-rolls per branch point (m); 0 turns branching off."""
    branch_turns: int = 3
    """Branch points per failed trajectory of a hard task (the first deviation and earlier turns)."""
    branch_margin: float = 0.1
    """Actions whose success rate is within this of the best action's are approved."""
    max_turns: int | None = None
    """Truncate episodes after this many turns (default: the env's)."""
    sampling: SamplingParams | None = None
    """The actor's sampling parameters (default: the backend's)."""
    seed: int = 0
    """Base seed of every episode and re-roll."""
    privileged: bool = False
    """Store the env's privileged task information in each example (for a privileged critic)."""

    def __post_init__(self) -> None:
        if self.trials < 1:
            raise ValueError(f"model.trials must be >= 1, got {self.trials}")
        if not 0.0 <= self.hard_threshold <= 1.0:
            raise ValueError(f"model.hard_threshold must be in [0, 1], got {self.hard_threshold}")
        if self.gold_tasks not in GOLD_TASKS:
            raise ValueError(f"model.gold_tasks must be one of {GOLD_TASKS}, got {self.gold_tasks!r}")
        if self.branch_rollouts < 0 or self.branch_turns < 0:
            raise ValueError("model.branch_rollouts and model.branch_turns must be >= 0")
        if not 0.0 <= self.branch_margin <= 1.0:
            raise ValueError(f"model.branch_margin must be in [0, 1], got {self.branch_margin}")


@dataclass
class TaskResult:
    """One task's outcome: its self-play figures and the examples labelled from it."""

    task_id: str
    trials: int
    successes: int
    hard: bool
    examples: list[CriticExample] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def pass_rate(self) -> float:
        return self.successes / self.trials if self.trials else 0.0

    def ledger(self) -> dict[str, Any]:
        """The line that marks this task finished (written after its examples)."""
        counts: dict[str, int] = {}
        for ex in self.examples:
            k = f"{ex.source}/{ex.verdict}"
            counts[k] = counts.get(k, 0) + 1
        return {
            "task_id": self.task_id,
            "trials": self.trials,
            "successes": self.successes,
            "pass_rate": round(self.pass_rate, 4),
            "hard": self.hard,
            "examples": len(self.examples),
            "labels": counts,
            **self.info,
        }


def _gold(
    env: MultiTurnEnv, task: Task, traj: Trajectory, privileged: str
) -> tuple[list[CriticExample], int]:
    """Gold labels of one trajectory; replays it for the env's plan when feedback needs one."""
    stop = first_deviation(traj)
    needs_plan = stop is not None or any(p.label for t in traj.turns for p in t.proposals)
    plans, mismatch = None, 0
    if needs_plan:
        upto = stop if stop is not None else len(traj.turns) - 1
        try:
            e, plans = replay(env, task, traj, upto)
            e.close()
        except ReplayMismatch:
            mismatch = 1  # label from the recorded judgement alone, without the plan
    return gold_labels(traj, plans, privileged), mismatch


def generate(
    tasks: Sequence[Task], env: MultiTurnEnv, actor: ChatBackend, config: DataGenConfig
) -> list[TaskResult]:
    """Self-play, mine and label a batch of tasks; one `TaskResult` per task, in order."""
    if not tasks:
        return []
    engine = RolloutEngine(env, config.max_turns, config.sampling, config.seed)
    trajs = engine.collect(tasks, actor, trials=config.trials)
    # the privileged text each episode recorded when it started, if the examples should carry it
    privileged = {t.task_id: t.privileged if config.privileged else "" for t in trajs}
    results: list[TaskResult] = []
    failed: list[tuple[Task, Trajectory]] = []
    for i, task in enumerate(tasks):
        mine = trajs[i * config.trials : (i + 1) * config.trials]
        wins = sum(t.success for t in mine)
        hard = wins / config.trials < config.hard_threshold
        res = TaskResult(task.id, config.trials, wins, hard, info={"replay_mismatches": 0})
        if hard or config.gold_tasks == "all":
            for traj in mine:
                examples, mismatch = _gold(env, task, traj, privileged[task.id])
                res.examples += examples
                res.info["replay_mismatches"] += mismatch
        if hard and config.branch_rollouts > 0:
            failed += [(task, t) for t in mine if not t.success]
        results.append(res)
    if failed:
        branched, stats = branch(
            engine,
            actor,
            failed,
            rollouts=config.branch_rollouts,
            turns=config.branch_turns,
            margin=config.branch_margin,
            seed=config.seed,
            privileged=privileged,
        )
        for res in results:
            res.examples += branched.get(res.task_id, [])
            if res.task_id in stats:
                res.info["branch"] = asdict(stats[res.task_id])
    for res in results:
        # trials share their clean prefixes: write each (context, action) once, the most trusted label
        res.examples, counts = dedupe(res.examples)
        res.info["duplicates"] = counts["duplicates"]
    return results
