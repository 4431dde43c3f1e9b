"""`CriticDataGen`: `lightning-asym predict` turns self-play of a fixed actor into critic examples."""

from __future__ import annotations

from typing import Any

from lightning import LightningModule

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.datagen.inloop import generate_inloop
from lightning_asym.datagen.selfplay import DataGenConfig, TaskResult, generate
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.jobs.contracts import HasEnv
from lightning_asym.jobs.critic_tasks import CriticTaskData
from lightning_asym.types import Task


class CriticDataGen(LightningModule):
    """Plays each batch of tasks `trials` times with `actor`, mines the hard ones and labels.

    `predict_step` returns one `TaskResult` per task (its pass rate, hard flag and examples),
    which `CriticExampleWriter` appends to disk. The env comes from the data module
    (`CriticTaskData`). The actor is only asked for actions; nothing here trains it. Tasks that
    the data module marks as in-loop (`data.init_args.inloop_split`) are played `inloop_trials`
    times under a reviewer that approves everything, and every proposal is labelled by the env
    (`datagen.inloop`), for the unbalanced calibration split `inloop.jsonl`.

    Args:
        actor: the fixed actor (any `ChatBackend`).
        trials: self-play episodes per task (k).
        hard_threshold: a task is hard when its pass rate is below this.
        gold_tasks: gold-label the trajectories of `all` tasks or of `hard` ones only.
        branch_rollouts: re-rolls per branch point (m); 0 turns counterfactual branching off.
        branch_turns: branch points per failed trajectory of a hard task.
        branch_margin: approve re-rolled actions whose success rate is within this of the best.
        max_turns: truncate episodes after this many turns (default: the env's).
        sampling: the actor's sampling parameters.
        seed: base seed of every episode and re-roll.
        privileged: store the env's privileged task information in the examples (a critic
            trained with `CriticSFT(privileged=true)` reads it; the actor never sees it).
        inloop_trials: episodes per in-loop task (see above).
    """

    def __init__(
        self,
        actor: ChatBackend,
        trials: int = 4,
        hard_threshold: float = 0.5,
        gold_tasks: str = "all",
        branch_rollouts: int = 4,
        branch_turns: int = 3,
        branch_margin: float = 0.1,
        max_turns: int | None = None,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        privileged: bool = False,
        inloop_trials: int = 1,
    ) -> None:
        super().__init__()
        if inloop_trials < 1:
            raise ValueError(f"model.inloop_trials must be >= 1, got {inloop_trials}")
        self.actor = actor
        self.inloop_trials = inloop_trials
        self.config = DataGenConfig(
            trials=trials,
            hard_threshold=hard_threshold,
            gold_tasks=gold_tasks,
            branch_rollouts=branch_rollouts,
            branch_turns=branch_turns,
            branch_margin=branch_margin,
            max_turns=max_turns,
            sampling=sampling,
            seed=seed,
            privileged=privileged,
        )

    def env(self) -> MultiTurnEnv:
        dm = self.trainer.datamodule if self._trainer is not None else None
        env = dm.env if isinstance(dm, HasEnv) else None
        if not isinstance(env, MultiTurnEnv):
            raise ValueError(
                "CriticDataGen plays the env of its data module: use "
                "data.class_path: lightning_asym.jobs.CriticTaskData with data.init_args.env."
            )
        return env

    def predict_step(self, batch: list[Task], batch_idx: int) -> list[TaskResult]:
        env = self.env()
        dm = self.trainer.datamodule if self._trainer is not None else None
        ids = dm.inloop_ids if isinstance(dm, CriticTaskData) else set()
        mined = generate([t for t in batch if t.id not in ids], env, self.actor, self.config)
        inloop = generate_inloop(
            [t for t in batch if t.id in ids], env, self.actor, self.config, self.inloop_trials
        )
        by_id = {r.task_id: r for r in mined + inloop}
        return [by_id[t.id] for t in batch]

    def configure_optimizers(self) -> Any:
        return None
