"""`CriticExampleWriter`: append-only, resumable shards of critic examples, then clean splits.

Per rank `r`, under `output_dir/shards/`:

* `examples.rank{r}.jsonl`: every task's `CriticExample`s, appended in one write per task;
* `done.rank{r}.jsonl`: the ledger, one line per finished task (id, trials, pass rate, hard
  flag, examples written), appended *after* that task's examples.

A task is finished exactly when its ledger line exists. At setup, lines that a killed run
left behind (examples of a task without a ledger line, a half-written last line) are
removed by rewriting that shard to a temporary file and renaming it over the old one, so
the task, which the data module does not skip, is played again without duplicates.

At the end of `predict`, rank zero reads every rank's finished examples and writes the
derived files `output_dir/train.jsonl` and `output_dir/validation.jsonl` (deduplicated,
split by task, balanced; see `balance.prepare`) and `summary.json`: the directory's only
`*.jsonl` files, which is what critic fine-tuning reads. The shards are the source of truth;
the derived files are rebuilt on each run.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info

from lightning_asym.datagen.balance import prepare
from lightning_asym.datagen.selfplay import TaskResult
from lightning_asym.types import CriticExample, from_dict, to_dict, write_jsonl

_SHARD = re.compile(r"^(examples|done)\.rank(\d+)\.jsonl$")


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []


def _json(line: str) -> dict[str, Any] | None:
    """A complete line's JSON object, or None for a torn or corrupt line."""
    if not line.endswith("\n"):
        return None
    try:
        d = json.loads(line)
    except json.JSONDecodeError:
        return None
    return d if isinstance(d, dict) and isinstance(d.get("task_id"), str) else None


def _rewrite(path: Path, lines: Sequence[str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.writelines(lines)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def find_writer(trainer: Trainer | None) -> CriticExampleWriter | None:
    """The trainer's `CriticExampleWriter`, if it has one."""
    if trainer is None:
        return None
    return next((c for c in trainer.callbacks if isinstance(c, CriticExampleWriter)), None)


class CriticExampleWriter(BasePredictionWriter):
    """Writes each finished task's examples and ledger line; builds the splits at the end.

    Args:
        output_dir: where the shards and the derived files go.
        val_fraction: share of tasks (by id hash) whose examples go to `validation.jsonl`.
        max_ratio: the majority verdict is kept to at most this many times the minority in
            each split (null keeps every example).
        seed: seeds the split and the downsampling.
    """

    def __init__(
        self,
        output_dir: str = "data/critic",
        val_fraction: float = 0.1,
        max_ratio: float | None = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__("batch")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"CriticExampleWriter.val_fraction must be in [0, 1), got {val_fraction}")
        if max_ratio is not None and max_ratio < 1.0:
            raise ValueError(f"CriticExampleWriter.max_ratio must be >= 1 or null, got {max_ratio}")
        self.output_dir = Path(output_dir)
        self.val_fraction, self.max_ratio, self.seed = val_fraction, max_ratio, seed
        self.rank = 0
        self.done: dict[str, dict[str, Any]] = {}
        """Ledger lines of every finished task (all ranks, earlier runs included)."""
        self.summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ files
    @property
    def shard_dir(self) -> Path:
        return self.output_dir / "shards"

    def examples_path(self, rank: int) -> Path:
        return self.shard_dir / f"examples.rank{rank}.jsonl"

    def ledger_path(self, rank: int) -> Path:
        return self.shard_dir / f"done.rank{rank}.jsonl"

    def ranks(self) -> list[int]:
        """Ranks that left shards (a rerun may use another world size)."""
        found = {int(m.group(2)) for p in self.shard_dir.glob("*.jsonl") if (m := _SHARD.match(p.name))}
        return sorted(found)

    def repair(self, rank: int) -> dict[str, int]:
        """Drop what a killed run left half-done in rank `rank`'s shards; returns the counts."""
        ledger = _lines(self.ledger_path(rank))
        good = [ln for ln in ledger if _json(ln) is not None]
        finished = {_json(ln)["task_id"] for ln in good}  # type: ignore[index]
        if len(good) != len(ledger):
            _rewrite(self.ledger_path(rank), good)
        lines = _lines(self.examples_path(rank))
        keep = [ln for ln in lines if (d := _json(ln)) is not None and d["task_id"] in finished]
        if len(keep) != len(lines):
            _rewrite(self.examples_path(rank), keep)
        return {"ledger_dropped": len(ledger) - len(good), "examples_dropped": len(lines) - len(keep)}

    def load_ledgers(self) -> dict[str, dict[str, Any]]:
        """Ledger lines of all ranks by task id (the first wins should a task appear twice)."""
        done: dict[str, dict[str, Any]] = {}
        for r in self.ranks():
            for ln in _lines(self.ledger_path(r)):
                d = _json(ln)
                if d is not None:
                    done.setdefault(d["task_id"], {**d, "rank": r})
        return done

    def finished_tasks(self) -> set[str]:
        return set(self.done)

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        # batches are lists of tasks from an iterable dataset: there are no sample indices to track
        warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
        self.rank = trainer.global_rank
        if trainer.is_global_zero:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
            for r in self.ranks():
                dropped = self.repair(r)
                if any(dropped.values()):
                    rank_zero_info(
                        f"{self.output_dir}: rank {r} had unfinished work from a killed run "
                        f"({dropped['examples_dropped']} example lines, {dropped['ledger_dropped']} "
                        "torn ledger lines); those tasks run again."
                    )
        trainer.strategy.barrier("critic_writer_setup")
        self.done = self.load_ledgers()

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        for result in prediction or []:
            self.write_task(result)

    def write_task(self, result: TaskResult) -> None:
        """Append one task's examples (one write), then its ledger line: the task is finished."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self._append_examples(result.examples)
        line = result.ledger()
        self._append_ledger(line)
        self.done[result.task_id] = {**line, "rank": self.rank}

    def _append_examples(self, examples: Sequence[CriticExample]) -> None:
        if not examples:
            return
        text = "".join(json.dumps(to_dict(ex), ensure_ascii=False, sort_keys=True) + "\n" for ex in examples)
        with self.examples_path(self.rank).open("a", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    def _append_ledger(self, line: dict[str, Any]) -> None:
        write_jsonl(self.ledger_path(self.rank), [line])

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        trainer.strategy.barrier("critic_writer_end")
        if trainer.is_global_zero:
            self.summary = self.build_splits()
            rank_zero_info(f"critic data in {self.output_dir}: {json.dumps(self.summary)}")
        trainer.strategy.barrier("critic_writer_built")

    # ------------------------------------------------------------------ the derived files
    def read_examples(self) -> list[CriticExample]:
        """Every finished task's examples from all shards (rank by rank, in writing order)."""
        done = self.load_ledgers()
        out = []
        for r in self.ranks():
            for ln in _lines(self.examples_path(r)):
                d = _json(ln)
                if d is not None and done.get(d["task_id"], {}).get("rank") == r:
                    out.append(from_dict(CriticExample, d))
        return out

    def build_splits(self) -> dict[str, Any]:
        """Write `train.jsonl`, `validation.jsonl` and `summary.json` from the shards."""
        done = self.load_ledgers()
        splits, summary = prepare(
            self.read_examples(), val_fraction=self.val_fraction, max_ratio=self.max_ratio, seed=self.seed
        )
        for name, examples in splits.items():
            path = self.output_dir / f"{name}.jsonl"
            tmp = path.with_name(path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            write_jsonl(tmp, examples)
            os.replace(tmp, path)  # derived files are rebuilt whole, never half-written
        hard = sum(bool(d.get("hard")) for d in done.values())
        summary = {
            "tasks": len(done),
            "hard_tasks": hard,
            "hard_rate": round(hard / len(done), 4) if done else 0.0,
            "pass_rate": round(sum(d["pass_rate"] for d in done.values()) / len(done), 4) if done else 0.0,
            **summary,
        }
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary
