"""tools/bench_supervise.py runs end to end and reports what it measured (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_supervise.py"


def test_bench_supervise_prints_a_ratio_in_its_last_json_line(capsys):
    spec = importlib.util.spec_from_file_location("bench_supervise", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    result = bench.main(["--tasks", "3", "--trials", "1", "--repeats", "1", "--error-rate", "0.5"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert last["episodes"] == 3 and last["reviews_per_episode"] > 0
    assert abs(last["ratio"] - last["supervised_s"] / last["alone_s"]) < 0.01 * last["ratio"]
