"""Replay every τ-bench task's gold actions through `TauBenchEnv` and the rollout engine, offline.

The actor is `gold_actor()` (the gold tool calls in order, then one reply stating the required
outputs) and the user is `TauScriptedUser`, so no model or API key is needed. τ-bench's reward
must be 1.0 on every task. Usage (τ-bench importable, e.g. after `make tau-bench`):

    .venv/bin/python tools/tau_bench_gold_replay.py                      # retail test + airline test
    .venv/bin/python tools/tau_bench_gold_replay.py --splits retail:train retail:validation

The last line is a JSON object: per domain:split, tasks, successes, seconds, and the tasks
whose gold actions include a tool error (τ-bench still scores them 1.0).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_asym.envs.tau_bench import TauBenchEnv  # noqa: E402
from lightning_asym.envs.tau_bench.gold import gold_actor  # noqa: E402
from lightning_asym.rollout.engine import RolloutEngine  # noqa: E402


def replay(domain: str, split: str, limit: int | None, batch: int) -> dict:
    env = TauBenchEnv(env_name=domain, user="scripted", max_turns=60)
    tasks = env.tasks(split)[:limit]
    engine = RolloutEngine(env)
    start = time.perf_counter()
    failed, with_errors, deviations = [], [], 0
    for i in range(0, len(tasks), batch):
        for traj in engine.collect(tasks[i : i + batch], gold_actor()):
            if not (traj.success and traj.reward == 1.0):
                failed.append(traj.task_id)
            if any("error" in t.info for t in traj.turns):
                with_errors.append(traj.task_id)
            deviations += sum(bool(t.info.get("deviation")) for t in traj.turns)
    seconds = time.perf_counter() - start
    print(
        f"{domain}:{split}: {len(tasks) - len(failed)}/{len(tasks)} reward 1.0, "
        f"{len(with_errors)} with a gold tool error, {deviations} gold turns judged deviations, {seconds:.0f} s",
        flush=True,
    )
    return {
        "tasks": len(tasks),
        "successes": len(tasks) - len(failed),
        "failed": failed,
        "gold_tool_errors": len(with_errors),
        "deviations": deviations,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--splits", nargs="+", default=["retail:test", "airline:test"], help="domain:split pairs")
    ap.add_argument("--limit", type=int, default=None, help="the first N tasks of each split")
    ap.add_argument("--batch", type=int, default=16, help="episodes in lock-step per engine call")
    args = ap.parse_args()
    figures = {}
    for pair in args.splits:
        domain, split = pair.split(":")
        figures[pair] = replay(domain, split, args.limit, args.batch)
    print(json.dumps(figures))
    if any(f["failed"] for f in figures.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
