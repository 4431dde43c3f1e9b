"""`tools/critic_errors.py`: the per-category breakdown of a critic's scored in-loop proposals."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import critic_errors  # noqa: E402


def row(action, verdict, p, violation=None):
    return {"action": action, "verdict": verdict, "p_revise": p, "violation": violation}


ROWS = [
    row("transfer_to_human_agents", "revise", 0.9, "transferred to a human agent although ..."),
    row("respond", "revise", 0.2, "told the user an amount the data does not support (19.71)"),
    row("respond", "revise", 0.7, "told the user an amount the data does not support (252.74)"),
    row("cancel_pending_order", "revise", 0.6),  # off plan: no rule, a wrong argument
    row(None, "revise", 0.1),
    row("respond", "approve", 0.1),
    row("respond", "approve", 0.55),
    row("get_order_details", "approve", 0.3),
    row("cancel_pending_order", "approve", 0.8),
]


def test_the_breakdown_matches_a_plain_count(tmp_path, capsys):
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = critic_errors.main([str(path), "--threshold", "0.5"])
    assert out["faults"] == {
        "told the user an amount the data does not support": {"n": 2, "flagged": 1, "rate": 0.5},
        "transferred to a human agent although ...": {"n": 1, "flagged": 1, "rate": 1.0},
        "off plan (write)": {"n": 1, "flagged": 1, "rate": 1.0},
        "unparsed": {"n": 1, "flagged": 0, "rate": 0.0},
    }
    assert out["correct"] == {
        "reply": {"n": 2, "flagged": 1, "rate": 0.5},
        "lookup": {"n": 1, "flagged": 0, "rate": 0.0},
        "write": {"n": 1, "flagged": 1, "rate": 1.0},
    }
    tp, fp = 3, 2
    assert out["precision"] == round(tp / (tp + fp), 3) and out["recall"] == round(tp / 5, 3)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out


def test_the_threshold_comes_from_the_critic_directory(tmp_path):
    path = tmp_path / "scores.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (tmp_path / "critic").mkdir()
    (tmp_path / "critic" / "review_config.json").write_text(json.dumps({"revise_threshold": 0.95}))
    out = critic_errors.main([str(path), "--critic", str(tmp_path / "critic")])
    assert out["threshold"] == 0.95 and out["precision"] is None and out["recall"] == 0.0
    with pytest.raises(SystemExit, match="no such file"):
        critic_errors.main([str(tmp_path / "missing.jsonl"), "--threshold", "0.5"])
