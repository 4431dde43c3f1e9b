"""τ-bench episodes with the adapter's cached gold digest against τ-bench's own reward, in one run.

The noisy oracle (our retail actor, no model) plays τ-bench retail test tasks with the scripted
user, twice: once as `TauBenchEnv` does now (each task's gold database built and digested once,
then one digest of each episode's database), once with τ-bench's own `calculate_reward` at every
episode's end (its reload, gold replay and two full hashes). Both
passes play the same seeded episodes; their rewards must agree. Usage (after `make tau-bench`):

    .venv/bin/python tools/bench_tau_reward.py --tasks 16 --trials 4

The last line is JSON: seconds and episodes per second of each pass, their ratio, and whether
the rewards agree.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_asym.envs.retail.oracle import NoisyOracleBackend  # noqa: E402
from lightning_asym.envs.tau_bench import TauBenchEnv  # noqa: E402
from lightning_asym.rollout.engine import RolloutEngine  # noqa: E402


class TauBenchOwnReward(TauBenchEnv):
    """The baseline: τ-bench's own `calculate_reward` at every episode's end."""

    def _calculate_reward(self):
        return type(self._env).calculate_reward(self._env)


def play(env_type: type, tasks: int, trials: int, error_rate: float) -> tuple[float, list[float]]:
    env = env_type(env_name="retail", user="scripted", max_turns=30)
    chosen = env.tasks("test")[:tasks]
    start = time.perf_counter()
    trajs = RolloutEngine(env, seed=0).collect(
        chosen, NoisyOracleBackend(error_rate=error_rate), trials=trials
    )
    return time.perf_counter() - start, [t.reward for t in trajs]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", type=int, default=16)
    p.add_argument("--trials", type=int, default=4)
    p.add_argument("--error-rate", type=float, default=0.15)
    args = p.parse_args()
    base_s, base_r = play(TauBenchOwnReward, args.tasks, args.trials, args.error_rate)
    new_s, new_r = play(TauBenchEnv, args.tasks, args.trials, args.error_rate)
    n = len(new_r)
    out = {
        "episodes": n,
        "tau_bench_reward_s": round(base_s, 2),
        "cached_digest_s": round(new_s, 2),
        "episodes_per_s": {"tau_bench_reward": round(n / base_s, 2), "cached_digest": round(n / new_s, 2)},
        "ratio": round(base_s / new_s, 2),
        "rewards_agree": base_r == new_r,
        "success_rate": round(sum(r >= 1.0 for r in new_r) / n, 3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
