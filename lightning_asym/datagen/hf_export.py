"""Critic examples as a chat dataset for the Hugging Face ecosystem (`datasets`, TRL's `SFTTrainer`).

The datagen step writes `CriticExample` JSONL (`train.jsonl`, `validation.jsonl`, derived from
append-only shards and a ledger, which this module only reads). Here each example becomes one
JSON line in the conversational form TRL's SFT expects:

    {"messages": [{"role": "system", ...}, {"role": "user", ...}, {"role": "assistant", ...}],
     "verdict": "revise", "task_id": "...", "source": "gold"}

The system and user turns are `review.format.example_prompt(...)`, the very prompt
`GenerativeCritic` sends at review time and `CriticSFT` trains on, with the same options
(`include_policy`, `max_messages`, `privileged`); the assistant turn is `format_verdict(...)`.
Train a critic on it elsewhere, then review with `GenerativeCritic` using the same options.
`datasets.load_dataset("json", data_dir=out)` loads both splits; `prompt_options.json` records
the options used.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lightning_asym.errors import UserError
from lightning_asym.review.format import example_prompt, format_verdict
from lightning_asym.types import CriticExample, read_jsonl

SPLITS = ("train", "validation")
OPTIONS_FILE = "prompt_options.json"


def chat_record(
    example: CriticExample,
    *,
    include_policy: bool = True,
    max_messages: int | None = None,
    privileged: bool = False,
    earlier_actions: bool = False,
) -> dict[str, Any]:
    """One example as `{"messages": [...], "verdict", "task_id", "source"}` (JSON-ready)."""
    shown = example if privileged else dataclasses.replace(example, privileged="")
    prompt = example_prompt(
        shown, include_policy=include_policy, max_messages=max_messages, earlier_actions=earlier_actions
    )
    messages = [{"role": m.role, "content": m.content} for m in prompt]
    messages.append({"role": "assistant", "content": format_verdict(example.verdict, example.feedback)})
    return {
        "messages": messages,
        "verdict": example.verdict,
        "task_id": example.task_id,
        "source": example.source,
    }


def export_chat_dataset(
    src: str | Path,
    out: str | Path,
    *,
    splits: Iterable[str] = SPLITS,
    include_policy: bool = True,
    max_messages: int | None = None,
    privileged: bool = False,
    earlier_actions: bool = False,
    overwrite: bool = False,
) -> dict[str, int]:
    """Writes `<out>/<split>.jsonl` for each split found in `src`; returns the counts per split.

    Refuses to replace existing files unless `overwrite` (nothing here truncates a user's data
    by surprise); `src` is never written.
    """
    src, out = Path(src), Path(out)
    found = {s: src / f"{s}.jsonl" for s in splits if (src / f"{s}.jsonl").exists()}
    if not found:
        raise UserError(
            f"no critic examples in {src} (looked for {', '.join(f'{s}.jsonl' for s in splits)}); "
            "run the datagen step first: lightning-asym predict --config configs/critic/datagen.yaml"
        )
    if out.resolve() == src.resolve():
        raise UserError(f"--out {out} is the source directory; export to another directory")
    targets = [out / f"{s}.jsonl" for s in found] + [out / OPTIONS_FILE]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise UserError(f"{', '.join(existing)} already exist; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    options = {
        "include_policy": include_policy,
        "max_messages": max_messages,
        "earlier_actions": earlier_actions,
        "privileged": privileged,
    }
    for split, path in found.items():
        examples = read_jsonl(path, CriticExample)
        lines = [json.dumps(chat_record(e, **options), ensure_ascii=False) for e in examples]
        tmp = out / f".{split}.jsonl.tmp"
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        tmp.replace(out / f"{split}.jsonl")  # whole or not at all
        counts[split] = len(lines)
    record = {**options, "source": str(src), "counts": counts}
    (out / OPTIONS_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return counts
