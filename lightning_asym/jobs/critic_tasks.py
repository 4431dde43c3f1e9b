"""`CriticTaskData`: the tasks that data generation still has to play, in batches, per rank.

`predict_dataloader` yields lists of `Task`. It leaves out the tasks that the trainer's
`CriticExampleWriter` finds in its ledgers (finished by an earlier run), then gives each
rank every `world_size`-th remaining task, so ranks never play the same task. With
`inloop_split`, the tasks of that split follow the training tasks: `CriticDataGen` plays them
for the unbalanced in-loop split (`datagen.inloop`) instead of mining and labelling them.
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
        inloop_split: also play the tasks of this split (e.g. `validation`) for the in-loop
            calibration split `inloop.jsonl` (null: none). Never the training split.
        inloop_tasks: use only the first N tasks of `inloop_split` (None = all).
    """

    def __init__(
        self,
        env: MultiTurnEnv,
        split: str = "train",
        num_tasks: int | None = None,
        batch_size: int = 8,
        inloop_split: str | None = None,
        inloop_tasks: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if num_tasks is not None and num_tasks < 1:
            raise ValueError(f"data.num_tasks must be >= 1 or null (all tasks), got {num_tasks}")
        if inloop_tasks is not None and inloop_tasks < 1:
            raise ValueError(f"data.inloop_tasks must be >= 1 or null (all tasks), got {inloop_tasks}")
        if inloop_split is not None and inloop_split == split:
            raise ValueError(
                f"data.inloop_split must differ from data.split ({split!r}): the in-loop split measures "
                "the critic on tasks it was not trained on; use e.g. validation"
            )
        self.env, self.split, self.num_tasks, self.batch_size = env, split, num_tasks, batch_size
        self.inloop_split, self.inloop_tasks = inloop_split, inloop_tasks
        self.inloop_ids: set[str] = set()
        """Ids of the tasks to play for the in-loop split (filled by `tasks()`)."""

    def _split_tasks(self, split: str, n: int | None, key: str) -> list[Task]:
        tasks = self.env.tasks(split)
        if not tasks:
            raise ValueError(f"data.{key}: env {self.env.name!r} has no tasks in split {split!r}")
        return tasks[:n] if n is not None else tasks

    def tasks(self) -> list[Task]:
        """The training tasks, then the in-loop tasks (if `inloop_split`)."""
        tasks = self._split_tasks(self.split, self.num_tasks, "split")
        if self.inloop_split is None:
            return tasks
        inloop = self._split_tasks(self.inloop_split, self.inloop_tasks, "inloop_split")
        self.inloop_ids = {t.id for t in inloop}
        clash = self.inloop_ids & {t.id for t in tasks}
        if clash:
            raise ValueError(
                f"data.inloop_split: tasks {sorted(clash)[:3]} are in both {self.split!r} and "
                f"{self.inloop_split!r}; the ledger keys tasks by id, so the splits need distinct ids"
            )
        return tasks + inloop

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
