"""A progress bar for data generation: tasks done, examples written, hard-task rate.

Lightning shows no logged metrics during `predict`, so the figures go in the bar's
description. They are counted from each batch's `TaskResult`s (whatever the callback
order), starting from what the writer's ledgers say earlier runs finished. Under DDP only
rank zero shows a bar, so its figures count rank zero's share of this run.
"""

from __future__ import annotations

from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar

from lightning_asym.datagen.inloop import INLOOP
from lightning_asym.datagen.selfplay import TaskResult
from lightning_asym.datagen.writer import find_writer


class DataGenProgressBar(RichProgressBar):
    """`RichProgressBar` whose predict bar reads `tasks N · ex M · hard P%`
    (and `· in-loop K` once in-loop tasks were played; they count apart from the mined tasks).

    Args:
        refresh_rate: refreshes per second (0 disables the bar).
        leave: keep the finished bar on screen.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = True) -> None:
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.counts = {"tasks": 0, "examples": 0, "hard": 0, "inloop": 0}

    @property
    def predict_description(self) -> str:
        return self.describe(**self.counts)

    @staticmethod
    def describe(tasks: int, examples: int, hard: int, inloop: int = 0) -> str:
        rate = hard / tasks if tasks else 0.0
        # short: an 80-column terminal must still show the bar's count and ETA beside it
        text = f"tasks {tasks} · ex {examples} · hard {rate:.0%}"
        return text + (f" · in-loop {inloop}" if inloop else "")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_predict_start(trainer, pl_module)
        writer = find_writer(trainer)
        done = writer.done.values() if writer is not None else []
        mined = [d for d in done if not d.get(INLOOP)]
        self.counts = {
            "tasks": len(mined),
            "examples": sum(int(d.get("examples", 0)) for d in mined),
            "hard": sum(bool(d.get("hard")) for d in mined),
            "inloop": sum(bool(d.get(INLOOP)) for d in done),
        }

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for r in outputs or []:
            if isinstance(r, TaskResult) and r.info.get(INLOOP):
                self.counts["inloop"] += 1
            elif isinstance(r, TaskResult):
                self.counts["tasks"] += 1
                self.counts["examples"] += len(r.examples)
                self.counts["hard"] += int(r.hard)
        if self.progress is not None and self.predict_progress_bar_id is not None:
            self.progress.update(self.predict_progress_bar_id, description=self.predict_description)
        super().on_predict_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)
