"""`tools/loop_errors.py`: a test run's reviews by round, against a hand count."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import loop_errors  # noqa: E402

OK = {"deviation": False, "rule": None, "violation": None}
AUTH = {
    "deviation": False,
    "rule": "authenticate first",
    "violation": "looked up private data before authenticating",
}
OFF = {"deviation": True, "rule": None, "violation": None}


def prop(text, label, verdict, name="respond"):
    return {
        "text": text,
        "action": {"name": name, "kwargs": {}},
        "label": label,
        "review": {"verdict": verdict},
    }


EPISODES = [
    {  # a false alarm, kept twice and flagged twice; then a missed lookup before authentication
        "success": False,
        "turns": [
            {"proposals": [prop("a", OK, "revise"), prop("a", OK, "revise"), prop("a ", OK, "revise")]},
            {"proposals": [prop("get", AUTH, "approve", "get_order_details")]},
        ],
    },
    {  # a true alarm, fixed; a correct reply passed; a missed off-plan write in a successful episode
        "success": True,
        "turns": [
            {"proposals": [prop("bad", OFF, "revise", "cancel_pending_order"), prop("good", OK, "approve")]},
            {"proposals": [prop("hi", OK, "approve")]},
            {"proposals": [prop("w", OFF, "approve", "cancel_pending_order")]},
            {"proposals": [prop("x", OK, "approve")] + [{"text": "x", "review": None}]},
        ],
    },
]


def test_rounds_repeats_and_misses_match_a_hand_count(tmp_path, capsys):
    path = tmp_path / "test.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EPISODES))
    out = loop_errors.main([str(path)])
    assert out["first"] == {"tp": 1, "fp": 1, "fn": 2, "tn": 2, "precision": 0.5, "recall": 0.333}
    assert out["revision"] == {
        "tp": 0,
        "fp": 2,
        "fn": 0,
        "tn": 1,
        "repeat_fp": 2,
        "precision": 0.0,
        "recall": None,
    }
    assert out["all"]["fp"] == 3 and out["all"]["tp"] == 1
    assert out["missed_first"] == [
        {"reason": "authenticate first", "tool": "get_order_details", "n": 1, "episodes_failed": 1},
        {"reason": "off plan", "tool": "cancel_pending_order", "n": 1, "episodes_failed": 0},
    ]
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == out


def test_a_missing_file_says_what_to_give(tmp_path):
    import pytest

    with pytest.raises(SystemExit, match="trajectories/test.jsonl"):
        loop_errors.main([str(tmp_path / "nope.jsonl")])
