"""`CriticDataGen`: `lightning-asym predict` turns self-play of a fixed actor into critic examples."""

from __future__ import annotations

from typing import Any

from lightning import LightningModule

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.datagen.selfplay import DataGenConfig, TaskResult, generate
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.types import Task


class CriticDataGen(LightningModule):
    """Plays each batch of tasks `trials` times with `actor`, mines the hard ones and labels.

    `predict_step` returns one `TaskResult` per task (its pass rate, hard flag and examples),
    which `CriticExampleWriter` appends to disk. The env comes from the data module
    (`CriticTaskData`). The actor is only asked for actions; nothing here trains it.

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
        privileged: store the env's privileged task information in the examples.
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
    ) -> None:
        super().__init__()
        self.actor = actor
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
        env = getattr(dm, "env", None)
        if not isinstance(env, MultiTurnEnv):
            raise ValueError(
                "CriticDataGen plays the env of its data module: use "
                "data.class_path: lightning_asym.jobs.CriticTaskData with data.init_args.env."
            )
        return env

    def predict_step(self, batch: list[Task], batch_idx: int) -> list[TaskResult]:
        return generate(batch, self.env(), self.actor, self.config)

    def configure_optimizers(self) -> Any:
        return None
