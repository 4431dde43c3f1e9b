"""Clean critic data: deduplicate, split by task, balance the verdicts.

The order matters: duplicates are removed first (so a duplicated context can never sit in
both splits), then whole tasks go to `train` or `validation` by a hash of their id, then
each split's majority verdict is downsampled to at most `max_ratio` times its minority.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from lightning_asym.review.format import render_action, render_transcript
from lightning_asym.types import APPROVE, REVISE, CriticExample

SPLITS = ("train", "validation")


def example_key(ex: CriticExample) -> str:
    """Hash of what the critic reads: the transcript, any privileged text and the proposal."""
    text = "\n".join((render_transcript(ex.messages), ex.privileged, render_action(ex.action, ex.text)))
    return hashlib.sha256(text.encode()).hexdigest()


def trust(ex: CriticExample) -> int:
    """How far a label is trusted (lower is more): a gold `revise` (the env saw the deviation),
    then branch labels (measured outcomes), then a gold `approve` (no deviation seen)."""
    if ex.source == "gold":
        return 0 if ex.verdict == REVISE else 2
    return 1


def dedupe(examples: Sequence[CriticExample]) -> tuple[list[CriticExample], dict[str, int]]:
    """One example per `example_key`: the most trusted label, the first among equals; order kept.

    Returns the kept examples and counts: `duplicates` dropped, `conflicts` (keys whose
    examples disagreed on the verdict).
    """
    best: dict[str, int] = {}
    verdicts: dict[str, set[str]] = {}
    for i, ex in enumerate(examples):
        k = example_key(ex)
        verdicts.setdefault(k, set()).add(ex.verdict)
        if k not in best or trust(ex) < trust(examples[best[k]]):
            best[k] = i
    keep = sorted(best.values())
    stats = {
        "duplicates": len(examples) - len(keep),
        "conflicts": sum(len(v) > 1 for v in verdicts.values()),
    }
    return [examples[i] for i in keep], stats


def _unit(seed: int, task_id: str) -> float:
    digest = hashlib.sha256(f"{seed}/{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64


def split_tasks(task_ids: Sequence[str], val_fraction: float, seed: int = 0) -> dict[str, str]:
    """`task_id -> split`: `validation` when the id's hash falls below `val_fraction`.

    A task's split depends only on its id and `seed`, so it never changes between runs. When
    the hash puts no task in validation but `val_fraction > 0` and there are two tasks or more,
    the task with the smallest hash goes there (small runs still get a validation set).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ids = sorted(set(task_ids))
    out = {t: "validation" if _unit(seed, t) < val_fraction else "train" for t in ids}
    if val_fraction > 0 and len(ids) > 1 and "validation" not in out.values():
        out[min(ids, key=lambda t: _unit(seed, t))] = "validation"
    return out


def balance(
    examples: Sequence[CriticExample], max_ratio: float | None, seed: int = 0
) -> tuple[list[CriticExample], bool]:
    """Downsample the majority verdict to at most `max_ratio` times the minority (order kept).

    Returns the examples and whether they are balanced: with `max_ratio=None`, or when one
    verdict has no example at all, nothing is dropped (and the second value is False when a
    verdict is missing).
    """
    counts = Counter(ex.verdict for ex in examples)
    if max_ratio is None:
        return list(examples), True
    if counts[APPROVE] == 0 or counts[REVISE] == 0:
        return list(examples), not examples
    major = APPROVE if counts[APPROVE] >= counts[REVISE] else REVISE
    cap = int(max_ratio * min(counts.values()))
    idx = [i for i, ex in enumerate(examples) if ex.verdict == major]
    if len(idx) <= cap:
        return list(examples), True
    drop = set(idx) - set(random.Random(seed).sample(idx, cap))
    return [ex for i, ex in enumerate(examples) if i not in drop], True


def prepare(
    examples: Sequence[CriticExample],
    *,
    val_fraction: float = 0.1,
    max_ratio: float | None = 1.0,
    seed: int = 0,
) -> tuple[dict[str, list[CriticExample]], dict[str, Any]]:
    """Dedupe, split by task and balance: `{"train": [...], "validation": [...]}` with each
    example's `split` set, and a summary of counts per split, source and verdict."""
    if max_ratio is not None and max_ratio < 1.0:
        raise ValueError(f"max_ratio must be >= 1 (or null to keep every example), got {max_ratio}")
    kept, stats = dedupe(examples)
    splits = split_tasks([ex.task_id for ex in kept], val_fraction, seed)
    out: dict[str, list[CriticExample]] = {}
    summary: dict[str, Any] = {"raw": len(examples), **stats}
    for name in SPLITS:
        part = [replace(ex, split=name) for ex in kept if splits[ex.task_id] == name]
        part, balanced = balance(part, max_ratio, seed)
        out[name] = part
        summary[name] = {
            "examples": len(part),
            "tasks": sum(s == name for s in splits.values()),
            "balanced": balanced,
            "labels": dict(sorted(Counter(f"{ex.source}/{ex.verdict}" for ex in part).items())),
        }
    return out, summary
