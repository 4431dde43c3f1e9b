"""`SupervisedAgent`: evaluate a fixed actor, alone or supervised by a critic (`lightning-asym test`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from torchmetrics import MeanMetric

from lightning_asym.backends.base import ChatBackend
from lightning_asym.metrics import InterventionRate, PassHatK
from lightning_asym.rollout.supervision import Reviewer
from lightning_asym.types import Trajectory, write_jsonl

_MEANS = ("success", "reward", "turns", "actor_tokens", "critic_tokens")


class SupervisedAgent(LightningModule):
    """Plays the data module's episodes with `actor` (and `critic`, if given) and scores them.

    Logs under `test/` (or `val/`): `success`, `reward`, `pass^1`..`pass^max_k`, `turns`,
    `actor_tokens` and `critic_tokens` per episode, `intervention_rate` and `wall_time`.
    Trajectories go to `<log_dir>/trajectories/<stage>.jsonl`.

    Args:
        actor: the acting backend (a local model, an API endpoint, a scripted or oracle actor).
        critic: an optional reviewer that supervises each proposed action.
        max_k: the largest k for pass^k (set the data module's `test_trials` >= max_k).
        save_trajectories: write every trajectory as JSONL in the log directory.
    """

    def __init__(
        self,
        actor: ChatBackend,
        critic: Reviewer | None = None,
        max_k: int = 4,
        save_trajectories: bool = True,
    ) -> None:
        super().__init__()
        self.actor = actor
        self.critic = critic
        self.max_k = max_k
        self.save_trajectories = save_trajectories
        self.stage_metrics = torch.nn.ModuleDict(
            {
                stage: torch.nn.ModuleDict(
                    {
                        **{name: MeanMetric() for name in _MEANS},
                        "pass_hat_k": PassHatK(max_k),
                        "intervention_rate": InterventionRate(),
                    }
                )
                for stage in ("val", "test")
            }
        )
        self._t0 = 0.0

    def rollout_policy(self) -> tuple[ChatBackend, Reviewer | None]:
        return self.actor, self.critic

    # ------------------------------------------------------------------ loops
    def validation_step(self, batch: list[Trajectory], batch_idx: int) -> None:
        self._score("val", batch)

    def test_step(self, batch: list[Trajectory], batch_idx: int) -> None:
        self._score("test", batch)

    def predict_step(self, batch: list[Trajectory], batch_idx: int) -> list[Trajectory]:
        return batch

    def on_validation_epoch_start(self) -> None:
        self._t0 = time.perf_counter()

    on_test_epoch_start = on_validation_epoch_start

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    # ------------------------------------------------------------------ scoring
    def _score(self, stage: str, batch: list[Trajectory]) -> None:
        m = self.stage_metrics[stage]
        n = len(batch)
        m["success"].update(torch.tensor([float(t.success) for t in batch]))
        m["reward"].update(torch.tensor([t.reward for t in batch]))
        m["turns"].update(torch.tensor([float(t.num_turns) for t in batch]))
        m["actor_tokens"].update(torch.tensor([float(t.info.get("actor_tokens", 0)) for t in batch]))
        m["critic_tokens"].update(torch.tensor([float(_critic_tokens(t)) for t in batch]))
        m["pass_hat_k"].update([t.task_id for t in batch], [t.success for t in batch])
        for t in batch:
            m["intervention_rate"].update(sum(_intervened(turn.proposals) for turn in t.turns), t.num_turns)
        for name in _MEANS:
            self.log(f"{stage}/{name}", m[name], on_step=False, on_epoch=True, batch_size=n)
        self.log(
            f"{stage}/intervention_rate", m["intervention_rate"], on_step=False, on_epoch=True, batch_size=n
        )
        if self.save_trajectories and not self.trainer.sanity_checking:
            write_jsonl(self._trajectory_file(stage), batch)

    def _finish(self, stage: str) -> None:
        phk = self.stage_metrics[stage]["pass_hat_k"]
        values = phk.compute()
        for k, v in enumerate(values.tolist(), start=1):
            if v == v:  # skip NaN: no task has k trials
                self.log(f"{stage}/pass^{k}", v, sync_dist=False)
        phk.reset()
        self.log(f"{stage}/wall_time", time.perf_counter() - self._t0)

    def _trajectory_file(self, stage: str) -> Path:
        root = Path(self.trainer.log_dir or ".")
        suffix = f".rank{self.global_rank}" if self.trainer.world_size > 1 else ""
        return root / "trajectories" / f"{stage}{suffix}.jsonl"

    def configure_optimizers(self) -> Any:
        return None


def _intervened(proposals: list) -> bool:
    return any(p.review is not None and not p.review.approved for p in proposals)


def _critic_tokens(t: Trajectory) -> int:
    return int(t.info.get("critic_tokens", 0))
