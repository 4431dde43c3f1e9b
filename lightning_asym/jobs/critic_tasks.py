"""`CriticTaskData`: the tasks that data generation still has to play, in batches, per rank.

`predict_dataloader` yields lists of `Task`. It leaves out the tasks that the trainer's
`CriticExampleWriter` finds in its ledgers (finished by an earlier run), then gives each
rank every `world_size`-th remaining task, so ranks never play the same task.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from lightning import LightningDataModule
from torch.utils.data import DataLoader, IterableDataset

from lightning_asym.datagen.writer import find_writer
from lightning_asym.envs.base import MultiTurnEnv
from lightning_asym.types import Task


class TaskBatches(IterableDataset):
    """`batch_size` tasks at a time; one empty batch when there is nothing left to do, so
    every rank still runs the predict hooks (the writer's end-of-run barrier and splits)."""

    def __init__(self, tasks: list[Task], batch_size: int) -> None:
        self.tasks, self.batch_size = tasks, batch_size

    def __len__(self) -> int:
        return max(1, -(-len(self.tasks) // self.batch_size))

    def __iter__(self) -> Iterator[list[Task]]:
        if not self.tasks:
            yield []
        for i in range(0, len(self.tasks), self.batch_size):
            yield self.tasks[i : i + self.batch_size]


def shard(tasks: list[Task], finished: set[str], rank: int, world_size: int) -> list[Task]:
    """This rank's share of the unfinished tasks (every `world_size`-th, from `rank`)."""
    return [t for t in tasks if t.id not in finished][rank::world_size]


class CriticTaskData(LightningDataModule):
    """Tasks of `env` for `lightning-asym predict` with `CriticDataGen`.

    Args:
        env: the domain; `CriticDataGen` plays its episodes on it.
        split: the task split to generate data from (`train`: never evaluate on it).
        num_tasks: use only the first N tasks of the split (None = all).
        batch_size: tasks per `predict_step` (each played `trials` times in one batch).
    """

    def __init__(
        self, env: MultiTurnEnv, split: str = "train", num_tasks: int | None = None, batch_size: int = 8
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_tasks is not None and num_tasks < 1:
            raise ValueError(f"data.num_tasks must be >= 1 or null (all tasks), got {num_tasks}")
        self.env, self.split, self.num_tasks, self.batch_size = env, split, num_tasks, batch_size

    def tasks(self) -> list[Task]:
        tasks = self.env.tasks(self.split)
        if not tasks:
            raise ValueError(f"data.split: env {self.env.name!r} has no tasks in split {self.split!r}")
        return tasks[: self.num_tasks] if self.num_tasks is not None else tasks

    def predict_dataloader(self) -> DataLoader:
        trainer = self.trainer
        finished: set[str] = set()
        rank, world = 0, 1
        if trainer is not None:
            writer = find_writer(trainer)
            if writer is None:
                raise ValueError(
                    "CriticTaskData needs a CriticExampleWriter in trainer.callbacks (it records which "
                    "tasks are finished); add `- class_path: lightning_asym.datagen.CriticExampleWriter` "
                    "with `init_args: {output_dir: ...}` under trainer.callbacks."
                )
            finished = writer.finished_tasks()
            rank, world = trainer.global_rank, trainer.world_size
        ds = TaskBatches(shard(self.tasks(), finished, rank, world), self.batch_size)
        return DataLoader(ds, batch_size=None, num_workers=0, collate_fn=_identity)

    def transfer_batch_to_device(self, batch: Any, device: Any, dataloader_idx: int) -> Any:
        return batch  # tasks are plain data; nothing to move


def _identity(batch: Any) -> Any:
    return batch
