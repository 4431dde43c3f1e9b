"""`CriticExampleWriter`: append-only, resumable shards of critic examples, then clean splits.

Per rank `r`, under `output_dir/shards/`:

* `examples.rank{r}.jsonl`: every task's `CriticExample`s, appended in one write per task;
* `done.rank{r}.jsonl`: the ledger, one line per finished task (id, trials, pass rate, hard
  flag, examples written), appended *after* that task's examples.

A task is finished exactly when its ledger line exists. At setup, lines that a killed run
left behind (examples of a task without a ledger line, a half-written last line) are
removed by rewriting that shard to a temporary file and renaming it over the old one, so
the task, which the data module does not skip, is played again without duplicates. A corrupt
line elsewhere (a bad edit, a bad disk) may hold a finished task's example: the ledger line's
example count finds the task that lost it, and that task is played again too, so its examples
come back; the rerun names each corrupt line as file:line. Without counts to go by, the run
stops and names the line instead of deleting it.

At the end of `predict`, rank zero reads every rank's finished examples and writes the
derived files `output_dir/train.jsonl` and `output_dir/validation.jsonl` (deduplicated,
split by task, balanced; see `balance.prepare`), `output_dir/inloop.jsonl` when in-loop tasks
were played (`datagen.inloop`: unbalanced, for threshold calibration) and `summary.json`: the
directory's only `*.jsonl` files, which is what critic fine-tuning reads. The shards are the source of truth;
the derived files are rebuilt on each run.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_asym.datagen.balance import prepare
from lightning_asym.datagen.inloop import INLOOP
from lightning_asym.datagen.selfplay import TaskResult
from lightning_asym.errors import UserError
from lightning_asym.types import REVISE, CriticExample, from_dict, to_dict, write_jsonl

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


def _example(line: str) -> dict[str, Any] | None:
    """A complete line's JSON object if it is a valid `CriticExample`, else None."""
    d = _json(line)
    if d is None:
        return None
    try:
        from_dict(CriticExample, d)
    except (TypeError, ValueError, KeyError):
        return None
    return d


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
        self.repaired: dict[int, dict[str, Any]] = {}
        """What `repair` did to each rank's shards at setup (rank zero only)."""

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

    def repair(self, rank: int) -> dict[str, Any]:
        """Drop what a killed run left half-done in rank `rank`'s shards, and the finished tasks
        that lost an example to a corrupt line (they are played again); returns what was done:
        `ledger_dropped`, `examples_dropped` (line counts), `corrupt` (`file:line` of each bad
        line) and `replayed` (finished tasks that run again).
        """
        ledger_path, examples_path = self.ledger_path(rank), self.examples_path(rank)
        ledger = _lines(ledger_path)
        entries = [_json(ln) for ln in ledger]
        lines = _lines(examples_path)
        parsed = [_example(ln) for ln in lines]
        bad = [i for i, d in enumerate(parsed) if d is None]
        # a torn last line is the write a kill cut short: its ledger line was never written
        torn_tail = bool(lines) and not lines[-1].endswith("\n")
        mid = [i for i in bad if not (torn_tail and i == len(lines) - 1)]
        expected = {d["task_id"]: d.get("examples") for d in entries if d is not None}
        if mid and any(not isinstance(n, int) for n in expected.values()):
            raise UserError(
                f"{examples_path}:{mid[0] + 1}: not a valid example line, and {ledger_path} keeps no "
                "example counts to tell which finished task it belongs to, so it is not deleted; fix the "
                f"line, or delete it with that task's line in {ledger_path.name} (the task is then played "
                f"again), or delete {self.output_dir} to start over"
            )
        counts = Counter(d["task_id"] for d in parsed if d is not None)
        lost = {t for t, n in expected.items() if isinstance(n, int) and counts[t] < n}
        good = [ln for ln, d in zip(ledger, entries) if d is not None and d["task_id"] not in lost]
        finished = {d["task_id"] for d in entries if d is not None} - lost
        if len(good) != len(ledger):
            _rewrite(ledger_path, good)
        keep = [ln for ln, d in zip(lines, parsed) if d is not None and d["task_id"] in finished]
        if len(keep) != len(lines):
            _rewrite(examples_path, keep)
        corrupt = [f"{examples_path}:{i + 1}" for i in mid]
        corrupt += [
            f"{ledger_path}:{i + 1}"
            for i, d in enumerate(entries)
            if d is None and not (i == len(ledger) - 1 and not ledger[i].endswith("\n"))  # torn by a kill
        ]
        return {
            "ledger_dropped": len(ledger) - len(good),
            "examples_dropped": len(lines) - len(keep),
            "corrupt": corrupt,
            "replayed": sorted(lost),
        }

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
                fixed = self.repair(r)
                self.repaired[r] = fixed
                if fixed["corrupt"] or fixed["replayed"]:
                    rank_zero_warn(
                        f"{self.output_dir}: rank {r}: corrupt lines {', '.join(fixed['corrupt'])}; "
                        f"finished tasks that lost examples run again: {fixed['replayed'] or 'none'} "
                        f"({fixed['examples_dropped']} example and {fixed['ledger_dropped']} ledger lines "
                        "set aside, the tasks' examples are written anew)"
                    )
                elif fixed["examples_dropped"] or fixed["ledger_dropped"]:
                    rank_zero_info(
                        f"{self.output_dir}: rank {r} had unfinished work from a killed run "
                        f"({fixed['examples_dropped']} example lines, {fixed['ledger_dropped']} "
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
        """Every finished task's examples from all shards, by task id (each task's in writing order).

        Sorting by task makes the derived files a function of what finished, not of the order
        in which ranks, resumed runs or replayed tasks finished it.
        """
        done = self.load_ledgers()
        out = []
        for r in self.ranks():
            for ln in _lines(self.examples_path(r)):
                d = _json(ln)
                if d is not None and done.get(d["task_id"], {}).get("rank") == r:
                    out.append(from_dict(CriticExample, d))
        return sorted(out, key=lambda ex: ex.task_id)

    def build_splits(self) -> dict[str, Any]:
        """Write `train.jsonl`, `validation.jsonl`, `inloop.jsonl` (when in-loop tasks were played)
        and `summary.json` from the shards. In-loop examples skip `prepare`: no dedupe, no
        balancing, their natural rate is the point (`datagen.inloop`)."""
        done = self.load_ledgers()
        examples = self.read_examples()
        splits, summary = prepare(
            [ex for ex in examples if ex.source != INLOOP],
            val_fraction=self.val_fraction,
            max_ratio=self.max_ratio,
            seed=self.seed,
        )
        inloop = [replace(ex, split=INLOOP) for ex in examples if ex.source == INLOOP]
        if inloop:
            splits[INLOOP] = inloop
            revise = sum(ex.verdict == REVISE for ex in inloop)
            summary[INLOOP] = {
                "examples": len(inloop),
                "tasks": len({ex.task_id for ex in inloop}),
                "revise": revise,
                "revise_rate": round(revise / len(inloop), 4),
            }
        for name, part in splits.items():
            path = self.output_dir / f"{name}.jsonl"
            tmp = path.with_name(path.name + ".tmp")
            tmp.unlink(missing_ok=True)
            write_jsonl(tmp, part)
            os.replace(tmp, path)  # derived files are rebuilt whole, never half-written
        mined = [d for d in done.values() if not d.get(INLOOP)]
        hard = sum(bool(d.get("hard")) for d in mined)
        summary = {
            "tasks": len(mined),
            "hard_tasks": hard,
            "hard_rate": round(hard / len(mined), 4) if mined else 0.0,
            "pass_rate": round(sum(d["pass_rate"] for d in mined) / len(mined), 4) if mined else 0.0,
            **summary,
        }
        if inloop:
            runs = [d for d in done.values() if d.get(INLOOP)]
            summary[INLOOP]["pass_rate"] = round(sum(d["pass_rate"] for d in runs) / len(runs), 4)
        (self.output_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return summary
