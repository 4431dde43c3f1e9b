"""`SupervisedAgent`: evaluate a fixed actor, alone or supervised by a reviewer (`lightning-asym test`)."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
from lightning import LightningModule
from torchmetrics import MeanMetric

from lightning_asym.backends.base import ChatBackend
from lightning_asym.metrics import Counts, PassHatK, critic_counts, critic_rates, ratio
from lightning_asym.review.base import Reviewer
from lightning_asym.types import Trajectory, write_jsonl

_MEANS = ("success", "reward", "turns", "actor_tokens", "critic_tokens")
_SECTIONS = {
    "outcome": ("success", "reward", "pass^*", "turns"),
    "critic": (
        "intervention_rate",
        "revision_success_rate",
        "critic_precision",
        "critic_recall",
        "unparsed_rate",
    ),
    "cost": ("actor_tokens", "critic_tokens", "wall_time"),
}


class SupervisedAgent(LightningModule):
    """Plays the data module's episodes with `actor` (and `reviewer`, if given) and scores them.

    Logs under `test/` (or `val/`):

    * outcome: `success`, `reward`, `pass^1`..`pass^max_k`, `turns`;
    * the critic: `intervention_rate` (turns with a revise verdict), `revision_success_rate`
      (of those, turns whose action that went out does not deviate), `critic_precision` and
      `critic_recall` (revise verdicts scored against the env's own judgement of each proposal,
      `Proposal.label`; logged only where the env can judge, such as retail), `unparsed_rate`;
    * cost: `actor_tokens` and `critic_tokens` per episode, `wall_time` in seconds.

    At the end of `test` a table of these figures is printed. Trajectories go to
    `<log_dir>/trajectories/<stage>.jsonl`.

    Args:
        actor: the acting backend (a local model, an API endpoint, a scripted or oracle actor).
        reviewer: an optional reviewer that supervises each proposed action (a
            `GenerativeCritic`, a `RetailRuleCritic`, any `Reviewer`).
        max_k: the largest k for pass^k (set the data module's `test_trials` >= max_k).
        save_trajectories: write every trajectory as JSONL in the log directory.
    """

    def __init__(
        self,
        actor: ChatBackend,
        reviewer: Reviewer | None = None,
        max_k: int = 4,
        save_trajectories: bool = True,
    ) -> None:
        super().__init__()
        self.actor = actor
        self.reviewer = reviewer
        self.max_k = max_k
        self.save_trajectories = save_trajectories
        self.stage_metrics = torch.nn.ModuleDict(
            {
                stage: torch.nn.ModuleDict(
                    {
                        **{name: MeanMetric() for name in _MEANS},
                        "pass_hat_k": PassHatK(max_k),
                        "counts": Counts(),
                    }
                )
                for stage in ("val", "test")
            }
        )
        self._t0 = 0.0
        self.results: dict[str, float] = {}

    def rollout_policy(self, stage: str) -> tuple[ChatBackend, Reviewer | None]:
        return self.actor, self.reviewer

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

    prints_test_table = True
    """It prints its own grouped table at the end of `test`; the CLI then skips Lightning's flat one."""

    def on_test_end(self) -> None:
        if self.global_rank == 0 and self.results:
            reviewer = type(self.reviewer).__name__ if self.reviewer is not None else "no reviewer"
            print_table(self.results, title=f"{type(self.actor).__name__} + {reviewer}")

    # ------------------------------------------------------------------ scoring
    def _score(self, stage: str, batch: list[Trajectory]) -> None:
        m = self.stage_metrics[stage]
        n = len(batch)
        m["success"].update(torch.tensor([float(t.success) for t in batch]))
        m["reward"].update(torch.tensor([t.reward for t in batch]))
        m["turns"].update(torch.tensor([float(t.num_turns) for t in batch]))
        m["actor_tokens"].update(torch.tensor([float(t.info.get("actor_tokens", 0)) for t in batch]))
        m["critic_tokens"].update(torch.tensor([float(t.info.get("critic_tokens", 0)) for t in batch]))
        m["pass_hat_k"].update([t.task_id for t in batch], [t.success for t in batch])
        for t in batch:
            m["counts"].update(critic_counts(t))
        for name in _MEANS:
            self.log(f"{stage}/{name}", m[name], on_step=False, on_epoch=True, batch_size=n)
        if self.save_trajectories and not self.trainer.sanity_checking:
            write_jsonl(self._trajectory_file(stage), batch)

    def _finish(self, stage: str) -> None:
        m = self.stage_metrics[stage]
        figures: dict[str, float] = {}
        for k, v in enumerate(m["pass_hat_k"].compute().reshape(-1).tolist(), start=1):
            figures[f"pass^{k}"] = v
        counts = m["counts"].compute()
        figures["intervention_rate"] = ratio(counts["intervened"], counts["turns"])
        if self.reviewer is not None:
            figures.update(critic_rates(counts))
        figures["wall_time"] = time.perf_counter() - self._t0
        for name in ("pass_hat_k", "counts"):
            m[name].reset()
        for name, v in figures.items():
            if not math.isnan(v):  # undefined rates (nothing to count) are not logged
                self.log(f"{stage}/{name}", v, sync_dist=False)
        if stage == "test":
            means = {name: float(m[name].compute()) for name in _MEANS if m[name].update_count}
            self.results = {**means, **figures}

    def _trajectory_file(self, stage: str) -> Path:
        root = Path(self.trainer.log_dir or ".")
        suffix = f".rank{self.global_rank}" if self.trainer.world_size > 1 else ""
        return root / "trajectories" / f"{stage}{suffix}.jsonl"

    def configure_optimizers(self) -> Any:
        return None


def print_table(results: dict[str, float], title: str = "") -> None:
    """The test figures as a rich table, grouped into outcome, critic and cost."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None)
    table.add_column("", style="dim")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for section, names in _SECTIONS.items():
        keys: list[str] = []
        for name in names:
            keys += sorted(k for k in results if k.startswith("pass^")) if name == "pass^*" else [name]
        for i, key in enumerate(k for k in keys if k in results):
            v = results[key]
            shown = "-" if math.isnan(v) else f"{v:.1f}" if abs(v) >= 100 else f"{v:.3f}"
            table.add_row(section if i == 0 else "", key, shown)
    Console().print(table)
