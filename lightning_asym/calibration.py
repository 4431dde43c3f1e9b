"""Choosing a critic's `revise_threshold` from its P(revise) on the in-loop split.

A critic revises a proposal when its P(revise) >= t. On labelled proposals (positive = the env
says revise) every threshold gives true alarms TP(t) and false alarms FP(t). Which t is best
depends on what an alarm does to the episode, so the choice rests on a stated model of the
actor's reaction:

* a true alarm makes the actor fix its wrong action with probability `fix_prob`;
* a false alarm makes it replace a correct action by a wrong one with probability `misled_prob`

(the noisy oracle's `fix_prob`/`misled_prob`, 0.8 and 0.3 by default). The expected number of
actions the critic turns from wrong to right, net, per reviewed proposal, is

    gain(t) = (TP(t) * fix_prob - FP(t) * misled_prob) / N

and `choose` takes the threshold that maximises it (`criterion="gain"`), or the F-beta score
(`criterion="f_beta"`). Raising no alarm at all has gain 0, so a critic that cannot beat that
gets the threshold that revises nothing. Ties go to the higher threshold (fewer interventions).
An alarm pays when its precision exceeds `misled_prob / (fix_prob + misled_prob)` (0.27 by
default); the threshold is read off the curve rather than set there because a P(revise) learned
on balanced data is not calibrated to the loop's much lower rate of faulty proposals.

The curve's thresholds are cut points between consecutive distinct scores (the midpoint), so
`p >= t` and `p > t` give the same alarms on the calibration data, and a float-level difference
between the scoring paths does not move a proposal across the line. Everything here is plain
numpy over lists, each counted quantity checked in the tests against a loop over thresholds.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from lightning_asym.errors import UserError

REVIEW_CONFIG = "review_config.json"
"""The review settings saved beside a critic directory (read by `GenerativeCritic`)."""
CRITERIA = ("gain", "f_beta")
RULE = "revise when P(revise) >= revise_threshold"


@dataclass
class CalibrationConfig:
    """How `revise_threshold` is chosen (see the module docstring)."""

    fix_prob: float = 0.8
    """P(the actor fixes a wrong action after a true alarm)."""
    misled_prob: float = 0.3
    """P(a correct action comes back wrong after a false alarm)."""
    criterion: Literal["gain", "f_beta"] = "gain"
    """Maximise the expected success gain, or the F-beta score."""
    beta: float = 1.0
    """F-beta's beta (reported for every criterion; > 1 weighs recall more)."""

    def __post_init__(self) -> None:
        for key in ("fix_prob", "misled_prob"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise UserError(f"model.init_args.calibration.{key} must be in [0, 1], got {value}")
        if self.criterion not in CRITERIA:
            raise UserError(
                f"model.init_args.calibration.criterion must be one of {CRITERIA}, got {self.criterion!r}"
            )
        if not self.beta > 0:
            raise UserError(f"model.init_args.calibration.beta must be > 0, got {self.beta}")


def counts(scores: Sequence[float], labels: Sequence[bool]) -> dict[str, np.ndarray]:
    """Alarm counts at every distinct cut, from raising none to raising all.

    Returns arrays of equal length K+1 (K distinct scores): `threshold` (descending cut points:
    point 0 raises no alarm unless a score is exactly 1, point k revises the k highest distinct
    scores), `tp`, `fp`, and the scalars `positives`, `negatives` as 0-d arrays.
    """
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1:
        raise ValueError(f"scores and labels must be 1-d of one length, got {s.shape} and {y.shape}")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    tp_c, fp_c = np.cumsum(y), np.cumsum(~y)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1] if len(s) else np.array([], dtype=int)
    uniq = s[last]
    lower = np.r_[uniq[1:], 0.0] if len(uniq) else uniq
    # raising no alarm needs a cut above every score; thresholds stop at 1, and a score of exactly
    # 1.0 (a saturated sigmoid) is an alarm even there, so point 0 counts what `p >= top` raises
    top = min(1.0, (1.0 + uniq[0]) / 2) if len(uniq) else 1.0
    top_alarm = s >= top
    return {
        "threshold": np.r_[top, (uniq + lower) / 2],
        "tp": np.r_[int((top_alarm & y).sum()), tp_c[last]].astype(np.int64),
        "fp": np.r_[int((top_alarm & ~y).sum()), fp_c[last]].astype(np.int64),
        "positives": np.asarray(int(y.sum())),
        "negatives": np.asarray(int((~y).sum())),
    }


def counts_loop(
    scores: Sequence[float], labels: Sequence[bool], thresholds: Sequence[float]
) -> tuple[list[int], list[int]]:
    """Reference: TP and FP at each threshold, by counting `p >= t` one proposal at a time."""
    tps, fps = [], []
    for t in thresholds:
        tp = fp = 0
        for p, y in zip(scores, labels):
            if p >= t:
                tp += bool(y)
                fp += not y
        tps.append(tp)
        fps.append(fp)
    return tps, fps


def precision_recall(tp: np.ndarray, fp: np.ndarray, positives: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision (1 where no alarm is raised) and recall (0 without positives)."""
    alarms = tp + fp
    precision = np.where(alarms > 0, tp / np.maximum(alarms, 1), 1.0)
    recall = tp / positives if positives else np.zeros(len(tp))
    return precision, recall


def f_beta(precision: np.ndarray, recall: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """F-beta of each point (0 where precision and recall are both 0)."""
    b2 = beta * beta
    den = b2 * precision + recall
    return np.where(den > 0, (1 + b2) * precision * recall / np.where(den > 0, den, 1.0), 0.0)


def expected_gain(tp: np.ndarray, fp: np.ndarray, n: int, fix_prob: float, misled_prob: float) -> np.ndarray:
    """Net actions turned from wrong to right per reviewed proposal: (TP*fix - FP*misled) / N."""
    return (tp * fix_prob - fp * misled_prob) / max(n, 1)


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under the PR curve as the sum of precision times each recall step."""
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def curve(scores: Sequence[float], labels: Sequence[bool], config: CalibrationConfig) -> list[dict[str, Any]]:
    """Every point of the PR curve with its threshold, counts, precision, recall, F-beta and gain."""
    c = counts(scores, labels)
    n, pos = len(scores), int(c["positives"])
    precision, recall = precision_recall(c["tp"], c["fp"], pos)
    fb = f_beta(precision, recall, config.beta)
    gain = expected_gain(c["tp"], c["fp"], n, config.fix_prob, config.misled_prob)
    return [
        {
            "threshold": float(c["threshold"][k]),
            "tp": int(c["tp"][k]),
            "fp": int(c["fp"][k]),
            "fn": pos - int(c["tp"][k]),
            "tn": n - pos - int(c["fp"][k]),
            "precision": float(precision[k]),
            "recall": float(recall[k]),
            "f_beta": float(fb[k]),
            "gain": float(gain[k]),
            "intervention_rate": float((c["tp"][k] + c["fp"][k]) / max(n, 1)),
        }
        for k in range(len(c["tp"]))
    ]


def choose(points: Sequence[dict[str, Any]], config: CalibrationConfig) -> dict[str, Any]:
    """The point that maximises the criterion (the first, i.e. highest threshold, among ties)."""
    if not points:
        raise ValueError("choose: no curve points (no examples were scored)")
    key = config.criterion
    best = max(range(len(points)), key=lambda k: (points[k][key], -k))
    return dict(points[best])


def calibrate(
    scores: Sequence[float], labels: Sequence[bool], config: CalibrationConfig
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`(summary, curve)`: the chosen point with the model and the data it rests on, and the curve."""
    if not len(scores):
        raise UserError(
            "calibration: no validation examples were scored; check data.init_args.path and val_split"
        )
    points = curve(scores, labels, config)
    best = choose(points, config)
    pos = sum(bool(y) for y in labels)
    by_f = choose(points, CalibrationConfig(config.fix_prob, config.misled_prob, "f_beta", config.beta))
    summary = {
        "revise_threshold": best["threshold"],
        "rule": RULE,
        **asdict(config),
        "examples": len(scores),
        "positives": pos,
        "revise_rate": pos / len(scores),
        "average_precision": average_precision(
            np.array([p["precision"] for p in points]), np.array([p["recall"] for p in points])
        ),
        "chosen": best,
        "best_f_beta": by_f,
        "at_0.5": at_threshold(scores, labels, 0.5, config),
    }
    return summary, points


def at_threshold(
    scores: Sequence[float], labels: Sequence[bool], t: float, config: CalibrationConfig
) -> dict[str, Any]:
    """The figures of a fixed threshold `t` (alarms where `p >= t`), e.g. the default 0.5."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels, dtype=bool)
    alarm = s >= t
    tp, fp, pos = np.array([int((alarm & y).sum())]), np.array([int((alarm & ~y).sum())]), int(y.sum())
    precision, recall = precision_recall(tp, fp, pos)
    return {
        "threshold": t,
        "tp": int(tp[0]),
        "fp": int(fp[0]),
        "precision": float(precision[0]),
        "recall": float(recall[0]),
        "f_beta": float(f_beta(precision, recall, config.beta)[0]),
        "gain": float(expected_gain(tp, fp, len(s), config.fix_prob, config.misled_prob)[0]),
    }


# --------------------------------------------------------------------------- the file


def update_review_config(directory: str | Path, updates: dict[str, Any]) -> Path:
    """Merge `updates` into `<directory>/review_config.json` (created if missing), atomically."""
    path = Path(directory) / REVIEW_CONFIG
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg}); fix or delete the file") from e
        if not isinstance(data, dict):
            raise UserError(f"{path}: expected a JSON object of review settings; fix or delete the file")
    data.update(updates)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n")
    os.replace(tmp, path)
    return path
