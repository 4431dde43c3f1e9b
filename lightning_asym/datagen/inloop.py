"""The in-loop split: the fixed actor's own proposals at their natural rate, for threshold calibration.

The balanced `validation.jsonl` says how well a critic separates the verdicts; it does not say
how many false alarms it raises in the loop, where most proposals are fine. The in-loop split
answers that: the actor plays tasks of the env's validation split under a reviewer that approves
everything (`ApproveAll`), so the rollout engine labels every proposal with the env's own
judgement (`check_action` → `Proposal.label`), exactly as `SupervisedAgent` scores a critic in the
loop. Each labelled proposal becomes one `CriticExample` (`source="inloop"`, `split="inloop"`):
`revise` when the env saw a deviation (or the action did not parse), else `approve`. Nothing is
deduplicated or balanced: trials that share a prefix propose the same action again, as they
would in the loop. The examples carry verdicts only (no feedback sentence); the env's violation
is kept in `info`.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning_asym.backends.base import ChatBackend
from lightning_asym.datagen.selfplay import DataGenConfig, TaskResult
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.review.base import ReviewRequest
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import APPROVE, REVISE, CriticExample, Review, Task, Trajectory

INLOOP = "inloop"
"""The `source` and the `split` of in-loop examples (written to `inloop.jsonl`)."""


class ApproveAll:
    """A reviewer that approves every proposal and costs nothing: the actor plays as if alone,
    and every proposal still passes through review, where the engine records the env's label."""

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        return [Review(APPROVE, "", score=0.0) for _ in requests]


def _deviates(label: dict) -> bool:
    return bool(label.get("deviation")) or bool(label.get("violation"))


def inloop_examples(traj: Trajectory, privileged: str = "") -> list[CriticExample]:
    """One example per labelled proposal of `traj`, labelled by the env (see the module docstring).

    `info["after_deviation"]` marks proposals made after an earlier deviation went out (the
    episode is then off the plan, as it would be in the loop when the critic missed it).
    """
    bounds = traj.state_boundaries()
    out: list[CriticExample] = []
    off_plan = False
    for turn in traj.turns:
        for p in turn.proposals:
            if p.label is None:
                continue  # the env does not judge: nothing to calibrate against
            bad = p.action is None or _deviates(p.label)
            out.append(
                CriticExample(
                    task_id=traj.task_id,
                    messages=list(traj.messages[: bounds[turn.index]]),
                    text=p.text,
                    action=p.action,
                    verdict=REVISE if bad else APPROVE,
                    source=INLOOP,
                    split=INLOOP,
                    privileged=privileged,
                    info={
                        "trial": traj.trial,
                        "turn": turn.index,
                        "violation": p.label.get("violation"),
                        "after_deviation": off_plan,
                    },
                )
            )
        off_plan = off_plan or (turn.action is not None and _deviates(turn.info))
    return out


def generate_inloop(
    tasks: Sequence[Task], env: MultiTurnEnv, actor: ChatBackend, config: DataGenConfig, trials: int
) -> list[TaskResult]:
    """Play `tasks` `trials` times each with `actor` under `ApproveAll`; one `TaskResult` per task
    (never hard: in-loop tasks are not mined or branched), its examples at their natural rate."""
    if not tasks:
        return []
    engine = RolloutEngine(env, config.max_turns, config.sampling, config.seed)
    trajs = engine.collect(tasks, actor, reviewer=ApproveAll(), trials=trials)
    results = []
    for i, task in enumerate(tasks):
        mine = trajs[i * trials : (i + 1) * trials]
        res = TaskResult(task.id, trials, sum(t.success for t in mine), False, info={INLOOP: True})
        for traj in mine:
            res.examples += inloop_examples(traj, traj.privileged if config.privileged else "")
        results.append(res)
    return results
