"""tools/plot_calibration.py draws the PR curve and pass^1 against threshold from real figure files."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest

from lightning_asym.calibration import CalibrationConfig, calibrate

pytest.importorskip("matplotlib")
TOOL = Path(__file__).resolve().parent.parent / "tools" / "plot_calibration.py"
PNG = b"\x89PNG\r\n\x1a\n"


def _tool():
    spec = importlib.util.spec_from_file_location("plot_calibration", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plots_the_curve_and_pass_against_threshold(tmp_path):
    rng = random.Random(0)
    labels = [rng.random() < 0.2 for _ in range(200)]
    scores = [min(1.0, rng.random() * 0.7 + 0.3 * y) for y in labels]
    summary, points = calibrate(scores, labels, CalibrationConfig())
    curve = tmp_path / "calibration.json"
    curve.write_text(json.dumps({"summary": {**summary, "split": "inloop"}, "curve": points}))
    evals = []
    for t, p in ((0.3, 0.41), (0.5, 0.47), (0.7, 0.44)):
        (tmp_path / f"m{t}.json").write_text(json.dumps({"test/pass^1": p}))
        evals += ["--eval", f"{t}={tmp_path / f'm{t}.json'}"]
    (tmp_path / "none.json").write_text(json.dumps({"test/pass^1": 0.25}))
    out = _tool().main([str(curve), *evals, "--reference", f"none={tmp_path / 'none.json'}"])
    assert out["pass1"] == {"0.3": 0.41, "0.5": 0.47, "0.7": 0.44}
    for key in ("pr_curve", "pass_vs_threshold"):
        assert Path(out[key]).read_bytes()[:8] == PNG


def test_bad_inputs_say_what_to_give(tmp_path):
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a calibration.json"):
        _tool().main([str(tmp_path / "c.json")])
