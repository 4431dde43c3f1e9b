"""`tools/bench_rollout.py` on a tiny model: the three ways play the same episodes, and the roofline
figures come from the engine's own decode steps."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import bench_rollout  # noqa: E402


def test_engine_naive_and_batched_play_the_same_episodes_and_the_roofline_is_reported():
    out = bench_rollout.main(
        ["--episodes", "3", "--turns", "2", "--max-new-tokens", "8", "--dtype", "float32"]
    )
    # greedy float32: one episode alone, all re-encoded together, and the engine agree token for token
    assert out["same_episodes"] == 3 and out["same_episodes_batched"] == 3
    assert out["engine_tokens"] == out["naive_tokens"] == out["batched_tokens"] > 0
    # every generated token but each turn's first comes from a one-token forward; so may the first,
    # when grouped prefill encoded the rest of the prompt before (`decoding.prefill_groups`)
    turns = sum(out["engine_episode_turns"])
    assert out["engine_tokens"] - turns <= out["decode_rows"] <= out["engine_tokens"]
    assert out["decode_steps"] > 0 and out["decode_rows_mean"] <= 3
    assert out["engine_decode_tok_s"] > 0 and out["ceiling_tok_s"] > 0 and out["decode_share"] > 0
    assert out["ceiling_bound"] in ("memory", "compute") and out["read_gb_s"] > 0
