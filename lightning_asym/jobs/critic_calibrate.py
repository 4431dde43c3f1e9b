"""`CriticSFT`'s review settings and threshold calibration: `review_config.json` and the PR curve.

A fine-tuned critic is only right with the prompt it was trained on, so `CriticSFT` writes its
prompt options into `<critic dir>/review_config.json` (`GenerativeCritic` reads them when it
loads that directory), with `revise_threshold: 0.5` until calibrated. `lightning-asym validate`
with `CriticSFT(model=<critic dir>)` on the in-loop split (`data.init_args.val_split: inloop`)
scores every example's P(revise), chooses the threshold (`lightning_asym.calibration`), writes
the curve to `<log_dir>/calibration.json`, each example's score to `<log_dir>/scores.jsonl`
(for `tools/critic_errors.py`) and the threshold with a summary into the critic's
`review_config.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch.distributed as dist
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_asym.calibration import REVIEW_CONFIG, CalibrationConfig, update_review_config
from lightning_asym.errors import UserError
from lightning_asym.types import CriticExample

PROMPT_KEYS = ("include_policy", "max_messages", "earlier_actions", "privileged")
"""The options that change the prompt: a critic must review with the ones it was trained on."""


def saved_options(directory: str | Path) -> dict[str, Any]:
    """The prompt options in `<directory>/review_config.json` ({} without the file)."""
    path = Path(directory) / REVIEW_CONFIG
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or delete the file") from e
    return {k: data[k] for k in PROMPT_KEYS if isinstance(data, dict) and k in data}


def check_options(directory: str | Path, options: dict[str, Any]) -> None:
    """Refuse prompt options that differ from those the critic in `directory` was trained with."""
    saved = saved_options(directory)
    wrong = [k for k in PROMPT_KEYS if k in saved and saved[k] != options[k]]
    if wrong:
        said = ", ".join(f"model.init_args.{k}={options[k]!r} (trained with {saved[k]!r})" for k in wrong)
        raise UserError(
            f"{Path(directory) / REVIEW_CONFIG} says the critic was trained with other prompt options: "
            f"{said}; use the trained ones, or the verdicts measured here do not hold at review time"
        )


def score_row(example: CriticExample, p_revise: float) -> dict[str, Any]:
    """One scored validation example, for error analysis (`tools/critic_errors.py`): what was
    proposed, the label and the env's reason for it, and the critic's P(revise)."""
    action = example.action
    return {
        "task_id": example.task_id,
        "trial": example.info.get("trial"),
        "turn": example.info.get("turn"),
        "action": None if action is None else action.name,
        "verdict": example.verdict,
        "violation": example.info.get("violation"),
        "after_deviation": example.info.get("after_deviation"),
        "source": example.source,
        "p_revise": p_revise,
    }


def gather_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every rank's scored rows of this validation epoch (on all ranks): one collective."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, rows)
        return [r for part in parts for r in part]
    return list(rows)


def write_calibration(
    log_dir: str | Path,
    critic_dir: Path | None,
    options: dict[str, Any],
    summary: dict[str, Any],
    points: list[dict[str, Any]],
    rows: list[dict[str, Any]] | None = None,
) -> tuple[Path, Path | None]:
    """Write `<log_dir>/calibration.json` (summary and curve), `<log_dir>/scores.jsonl` (each
    example's `score_row`, when given) and, for a saved critic, its threshold.

    The critic's `review_config.json` gets `revise_threshold` and `calibration` (the summary
    and where the curve is); prompt options it lacks (a critic saved before the file existed)
    are filled from `options`. Returns both paths (the second None without a critic directory).
    """
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    curve_path = log_dir / "calibration.json"
    tmp = curve_path.with_name(curve_path.name + ".tmp")
    tmp.write_text(json.dumps({"summary": summary, "curve": points}, indent=1, sort_keys=True) + "\n")
    tmp.replace(curve_path)
    if rows:
        tmp = log_dir / "scores.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
        tmp.replace(log_dir / "scores.jsonl")
    if critic_dir is None:
        return curve_path, None
    saved = saved_options(critic_dir)
    missing = {k: v for k, v in options.items() if k not in saved}
    updates = {**missing, "revise_threshold": summary["revise_threshold"]}
    updates["calibration"] = {**summary, "curve": str(curve_path.resolve())}
    return curve_path, update_review_config(critic_dir, updates)


def report_calibration(
    log_dir: str | Path,
    critic_dir: Path | None,
    options: dict[str, Any],
    config: CalibrationConfig,
    split: str | None,
    result: tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """`validate`'s end: warn when the split is not the in-loop one, write the calibration
    (`write_calibration`) and say in one line what was chosen and where it went. `result` is
    `(summary, points)` of `calibration.calibrate` and the scored rows."""
    summary, points, rows = result
    summary["split"] = split
    if split != "inloop":
        rank_zero_warn(
            f"calibrating revise_threshold on the {split or 'given'} split: in the loop most proposals "
            "are fine, so a balanced split understates false alarms; use data.init_args.val_split: inloop"
        )
    curve, saved = write_calibration(log_dir, critic_dir, options, summary, points, rows)
    where = f"and revise_threshold into {saved}" if saved else "(model is not a saved critic directory)"
    chosen = summary["chosen"]
    rank_zero_info(
        f"calibration ({config.criterion}, fix_prob={config.fix_prob}, "
        f"misled_prob={config.misled_prob}) on {len(rows)} {split} examples: "
        f"revise_threshold={summary['revise_threshold']:.4f}, precision {chosen['precision']:.3f}, "
        f"recall {chosen['recall']:.3f}, gain {chosen['gain']:.4f} per review; wrote the curve to {curve} {where}"
    )
