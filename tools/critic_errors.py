"""Where a critic's verdicts go wrong: its in-loop scores broken down by what was proposed.

`lightning-asym validate` with a calibrate config writes `<log_dir>/scores.jsonl` (each
validation example's P(revise), verdict, action and the env's reason for a revise). This tool
reads it and, at the critic's threshold, counts per category how often the critic flags:

- faulty proposals, by the env's reason (the broken rule with amounts stripped, or
  `off plan` when the env saw a deviation without a rule, or `unparsed`): the recall per kind;
- correct proposals, by kind (`reply`, `lookup` for read-only tools, `write`, `transfer`): the
  false-alarm rate per kind.

    python tools/critic_errors.py runs/calibrate_smollm2_lora_privileged_calls/version_0/scores.jsonl \\
        --critic runs/critic_smollm2_lora_privileged_calls

The last line is one JSON object of the same figures.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

WRITE_PREFIXES = ("cancel_", "modify_", "return_", "exchange_", "update_", "book_", "send_")


def kind(action: str | None) -> str:
    """The kind of a proposed action, by its tool name."""
    if action is None:
        return "unparsed"
    if action == "respond":
        return "reply"
    if action.startswith("transfer"):
        return "transfer"
    return "write" if action.startswith(WRITE_PREFIXES) else "lookup"


def reason(row: dict[str, Any]) -> str:
    """Why the env judged a proposal faulty, without the figures that vary between examples."""
    if row["action"] is None:
        return "unparsed"
    text = row.get("violation")
    if not text:
        return f"off plan ({kind(row['action'])})"
    return re.sub(r"\s*\([^)]*\)", "", str(text)).strip()


def breakdown(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    """Per category: examples and how many the critic flags at `threshold`."""
    faults: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    correct: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        table, key = (faults, reason(r)) if r["verdict"] == "revise" else (correct, kind(r["action"]))
        table[key][0] += 1
        table[key][1] += r["p_revise"] >= threshold
    tp = sum(f for _, f in faults.values())
    fp = sum(f for _, f in correct.values())
    pos = sum(n for n, _ in faults.values())

    def rows_of(table: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
        order = sorted(table.items(), key=lambda kv: -kv[1][0])
        return {k: {"n": n, "flagged": f, "rate": round(f / n, 3)} for k, (n, f) in order}

    return {
        "threshold": threshold,
        "examples": len(rows),
        "precision": round(tp / (tp + fp), 3) if tp + fp else None,
        "recall": round(tp / pos, 3) if pos else None,
        "faults": rows_of(faults),
        "correct": rows_of(correct),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scores", help="a scores.jsonl written by `lightning-asym validate` (calibration)")
    p.add_argument("--critic", help="the critic directory: its calibrated revise_threshold is used")
    p.add_argument("--threshold", type=float, help="revise when P(revise) >= this (overrides --critic)")
    args = p.parse_args(argv)
    path = Path(args.scores)
    if not path.is_file():
        sys.exit(f"{path}: no such file; run `lightning-asym validate` with a calibrate config first")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    threshold = args.threshold
    if threshold is None and args.critic:
        config = Path(args.critic) / "review_config.json"
        if not config.is_file():
            sys.exit(f"{config}: no such file; pass --threshold or a fine-tuned critic directory")
        threshold = float(json.loads(config.read_text())["revise_threshold"])
    if threshold is None:
        sys.exit("give --critic (its calibrated threshold) or --threshold")
    out = breakdown(rows, threshold)
    print(
        f"{out['examples']} scored proposals at threshold {threshold:.4f}: "
        f"precision {out['precision']}, recall {out['recall']}"
    )
    for title, key in (
        ("faulty proposals flagged (recall per kind)", "faults"),
        ("correct proposals flagged (false alarms per kind)", "correct"),
    ):
        print(f"\n{title}:")
        for name, c in out[key].items():
            print(f"  {c['flagged']:>4} / {c['n']:<4} {c['rate']:>6.1%}  {name}")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
