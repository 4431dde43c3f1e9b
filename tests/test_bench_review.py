"""tools/bench_review.py runs end to end with a tiny critic and reports what it measured (no timing asserted)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "tools" / "bench_review.py"


def test_bench_review_replays_the_same_requests_on_both_paths(capsys):
    spec = importlib.util.spec_from_file_location("bench_review", TOOL)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    argv = [
        "--critic",
        "tiny",
        "--episodes",
        "2",
        "--max-turns",
        "3",
        "--no-include-policy",
        "--dtype",
        "float32",
    ]
    result = bench.main([*argv, "--uncached", "--threads", "1"])
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == result
    assert last["reviews"] >= 6 and last["batches"] >= 3  # 2 episodes x 3 turns, plus any revisions
    assert abs(last["speedup"] - last["old_s_per_review"] / last["new_s_per_review"]) < 0.02 * last["speedup"]
    # a random tiny model writes no VERDICT line: the old path defaults every verdict
    assert last["old_unparsed"] == last["reviews"]
    # the cache changes the speed, not the scores (float32)
    assert last["cached_vs_uncached_verdicts"] == 1.0 and last["cached_vs_uncached_max_abs_p"] < 1e-4
    assert 0.0 < last["reused_token_share"] < 1.0
