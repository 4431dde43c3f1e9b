"""Threshold calibration: the PR curve and the expected-gain choice against plain loops."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from lightning_asym.calibration import (
    CalibrationConfig,
    at_threshold,
    calibrate,
    counts,
    counts_loop,
    curve,
    update_review_config,
)
from lightning_asym.errors import UserError


def _data(seed: int, n: int, levels: int, skill: float) -> tuple[list[float], list[bool]]:
    """Scores rounded to `levels` values (ties), positives about 20% and scored higher by `skill`."""
    rng = random.Random(seed)
    labels = [rng.random() < 0.2 for _ in range(n)]
    scores = [
        round(min(1.0, max(0.0, rng.random() * (1 - skill) + skill * y)) * levels) / levels for y in labels
    ]
    return scores, labels


GRID = [
    (seed, n, levels, skill)
    for seed in range(3)
    for n in (1, 7, 60)
    for levels in (1, 4, 1000)
    for skill in (0.0, 0.6)
]


@pytest.mark.parametrize(("seed", "n", "levels", "skill"), GRID)
def test_counts_match_a_loop_over_thresholds(seed, n, levels, skill):
    scores, labels = _data(seed, n, levels, skill)
    c = counts(scores, labels)
    tp, fp = counts_loop(scores, labels, c["threshold"].tolist())
    assert c["tp"].tolist() == tp and c["fp"].tolist() == fp
    # `p > t` raises the same alarms as `p >= t` at every cut point: no score sits on a cut
    # (except cuts at 0 or 1 themselves, which only saturated scores of exactly 0 or 1 sit on)
    strict = [sum(p > t and y for p, y in zip(scores, labels)) for t in c["threshold"]]
    assert [a for a, t in zip(strict, c["threshold"]) if 0 < t < 1] == [
        b for b, t in zip(tp, c["threshold"]) if 0 < t < 1
    ]
    assert (tp[0] == fp[0] == 0 or max(scores) == 1.0) and tp[-1] == sum(labels) and fp[-1] == n - sum(labels)
    assert all(a > b for a, b in zip(c["threshold"], c["threshold"][1:]))


@pytest.mark.parametrize(("seed", "n", "levels", "skill"), GRID)
def test_the_chosen_threshold_maximises_the_expected_gain_by_brute_force(seed, n, levels, skill):
    scores, labels = _data(seed, n, levels, skill)
    config = CalibrationConfig(fix_prob=0.8, misled_prob=0.3)
    summary, points = calibrate(scores, labels, config)
    # brute force: every threshold in a fine grid, gain counted one proposal at a time
    best = max(
        sum((0.8 if y else -0.3) for p, y in zip(scores, labels) if p >= t) / n
        for t in np.linspace(0, 1, 1001)  # revise_threshold is a probability
    )
    assert summary["chosen"]["gain"] == pytest.approx(best)
    t = summary["revise_threshold"]
    got = sum((0.8 if y else -0.3) for p, y in zip(scores, labels) if p >= t) / n
    assert got == pytest.approx(summary["chosen"]["gain"])  # the threshold reproduces its point
    assert 0.0 <= t <= 1.0
    for p in points:  # precision, recall and F1 of each point, from its counts
        alarms, pos = p["tp"] + p["fp"], p["tp"] + p["fn"]
        assert p["precision"] == pytest.approx(p["tp"] / alarms if alarms else 1.0)
        assert p["recall"] == pytest.approx(p["tp"] / pos if pos else 0.0)
        prec, rec = p["precision"], p["recall"]
        assert p["f_beta"] == pytest.approx(2 * prec * rec / (prec + rec) if prec + rec else 0.0)


def test_f_beta_criterion_and_a_useless_critic():
    scores, labels = _data(0, 200, 100, 0.7)
    by_f = calibrate(scores, labels, CalibrationConfig(criterion="f_beta", beta=2.0))[0]
    points = curve(scores, labels, CalibrationConfig(beta=2.0))
    assert by_f["chosen"]["f_beta"] == max(p["f_beta"] for p in points)
    # a critic whose every alarm is false: no threshold beats raising none
    scores, labels = [0.9, 0.8, 0.7, 0.1], [False, False, False, True]  # 0.8 - 3 * 0.3 < 0
    summary, _ = calibrate(scores, labels, CalibrationConfig())
    assert summary["chosen"]["tp"] + summary["chosen"]["fp"] == 0 and summary["revise_threshold"] > 0.9
    fixed = at_threshold(scores, labels, 0.5, CalibrationConfig())
    assert (fixed["tp"], fixed["fp"]) == (0, 3) and fixed["gain"] == pytest.approx(-0.9 / 4)


def test_config_errors_name_the_key():
    with pytest.raises(UserError, match="calibration.misled_prob must be in"):
        CalibrationConfig(misled_prob=1.5)
    with pytest.raises(UserError, match="calibration.criterion"):
        CalibrationConfig(criterion="accuracy")  # type: ignore[arg-type]


def test_update_review_config_merges_and_names_a_bad_file(tmp_path):
    (tmp_path / "review_config.json").write_text(json.dumps({"max_messages": 2, "revise_threshold": 0.5}))
    update_review_config(tmp_path, {"revise_threshold": 0.7, "calibration": {"x": 1}})
    data = json.loads((tmp_path / "review_config.json").read_text())
    assert data == {"max_messages": 2, "revise_threshold": 0.7, "calibration": {"x": 1}}
    (tmp_path / "review_config.json").write_text("{oops")
    with pytest.raises(UserError, match=r"review_config.json:1: not valid JSON"):
        update_review_config(tmp_path, {})
