"""A recorded run of `NoisyOracleBackend` on our retail env, to keep its behaviour fixed.

`record()` plays the noisy oracle (error rate 0.3) on the first retail test tasks, alone and
under `RetailRuleCritic`, through the rollout engine, and digests every episode's proposals
(the texts the oracle emitted, rejected ones included) and the oracle's failure counters.
`tests/data/oracle_retail_record.json` holds what main's code gave (commit 9d6d9fb); the
test compares today's run with it, so the oracle's actions and random draws on our retail
cannot drift while it learns other domains. Regenerate (only for an intended change, and
say so in the commit): `python tests/oracle_record.py > tests/data/oracle_retail_record.json`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

NUM_TASKS = 30
TRIALS = 2


def _digest(traj: Any) -> str:
    texts = [[p.text for p in t.proposals] or [t.text] for t in traj.turns]
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]


def record() -> dict[str, Any]:
    from lightning_asym.envs.retail import RetailEnv
    from lightning_asym.envs.retail.oracle import NoisyOracleBackend
    from lightning_asym.review.rules import RetailRuleCritic
    from lightning_asym.rollout.engine import RolloutEngine

    env = RetailEnv()
    tasks = env.tasks("test")[:NUM_TASKS]
    out: dict[str, Any] = {}
    for name, reviewer in (("alone", None), ("rule_critic", RetailRuleCritic())):
        oracle = NoisyOracleBackend(error_rate=0.3)
        trajs = RolloutEngine(env, seed=0).collect(tasks, oracle, reviewer, trials=TRIALS)
        out[name] = {
            "episodes": {f"{t.task_id}#{t.trial}": _digest(t) for t in trajs},
            "successes": sum(t.success for t in trajs),
            "injected": dict(sorted(oracle.injected.items())),
            "opportunities": dict(sorted(oracle.opportunities.items())),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(record(), indent=1, sort_keys=True))
