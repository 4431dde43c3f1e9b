"""The wall-time cost of runtime supervision: the same episodes with the actor alone and with a critic.

Both runs play the same retail test tasks, trials and seeds with the same actor; the
supervised run adds a critic that reviews every proposal (and the revisions it asks for).
The ratio supervised / alone is what supervision costs in wall time. Last line: one JSON object.

    python tools/bench_supervise.py [--tasks 40] [--trials 2] [--error-rate 0.15]
        [--critic rule | llm] [--critic-model tiny|smollm2|DIR] [--repeats 3]

With the default noisy-oracle actor (text written by code, no model) the actor costs almost
nothing, so the ratio is an upper bound: the critic's whole cost against an actor that is free.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings


def make_critic(kind: str, model: str):
    from lightning_asym.review import GenerativeCritic, RetailRuleCritic

    if kind == "rule":
        return RetailRuleCritic()
    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.backends.hf import TransformersBackend

    backend = TransformersBackend(model, sampling=SamplingParams(max_new_tokens=32, temperature=0))
    return GenerativeCritic(backend)


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", type=int, default=40)
    p.add_argument("--trials", type=int, default=2)
    p.add_argument("--error-rate", type=float, default=0.15)
    p.add_argument("--critic", choices=("rule", "llm"), default="rule")
    p.add_argument("--critic-model", default="tiny", help="for --critic llm: tiny, smollm2 or a directory")
    p.add_argument("--max-revisions", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3, help="median of this many runs of each")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    from lightning_asym.envs.retail import RetailEnv
    from lightning_asym.envs.retail.oracle import NoisyOracleBackend
    from lightning_asym.metrics import critic_counts
    from lightning_asym.rollout.engine import RolloutEngine
    from lightning_asym.rollout.supervision import SupervisionConfig

    env = RetailEnv(seed=0, num_test=args.tasks)
    tasks = env.tasks("test")
    engine = RolloutEngine(env, seed=0, supervision=SupervisionConfig(max_revisions=args.max_revisions))
    critic = make_critic(args.critic, args.critic_model)

    def run(with_critic: bool):
        actor = NoisyOracleBackend(error_rate=args.error_rate)
        return engine.collect(tasks, actor, critic if with_critic else None, trials=args.trials)

    alone_s, alone = timed(lambda: run(False), args.repeats)
    sup_s, sup = timed(lambda: run(True), args.repeats)
    episodes = len(tasks) * args.trials
    reviews = sum(critic_counts(t)["reviews"] for t in sup)
    result = {
        "critic": args.critic if args.critic == "rule" else f"llm:{args.critic_model}",
        "episodes": episodes,
        "alone_s": round(alone_s, 4),
        "supervised_s": round(sup_s, 4),
        "ms_per_review": round(1000 * (sup_s - alone_s) / max(reviews, 1), 3),
        "reviews_per_episode": round(reviews / episodes, 2),
        "success_alone": round(sum(t.success for t in alone) / episodes, 3),
        "success_supervised": round(sum(t.success for t in sup) / episodes, 3),
        "critic_tokens_per_episode": round(sum(t.info["critic_tokens"] for t in sup) / episodes, 1),
        "ratio": round(sup_s / alone_s, 3),
    }
    print(f"actor alone:      {alone_s:8.3f} s for {episodes} episodes")
    print(f"with the critic:  {sup_s:8.3f} s ({reviews} reviews, {result['ms_per_review']} ms each)")
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
