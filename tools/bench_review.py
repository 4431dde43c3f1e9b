"""Seconds per review of a local critic: generate-everything (the old path) against scored + cached.

First the review requests a critic sees in the loop are recorded: the noisy oracle plays the
retail test split, supervised by the rule critic (which decides the revisions), and every
batch of requests, one per step and attempt, is kept in order with the engine's releases of
finished episodes. Then the same critic model (one load, one dtype, the same prompt options)
reviews exactly those batches, in the same order, twice:

- old: `GenerativeCritic(mode="generate")`, every prompt encoded anew, the whole answer
  generated and its VERDICT line parsed (the behaviour before scored reviews);
- new: `GenerativeCritic(mode="score")`, P(revise) from the verdict logits with each episode's
  prompt cached, feedback generated for revise verdicts only.

With `--quantize int8`, the scored path runs a third time on a copy of the critic with int8
linears (`backends.quant`), and its verdicts are compared with the float32 scored path's.
With `--uncached`, the scored path also runs without its cache (`cache_size=0`), to show that the
cache changes the speed, not the scores. Verdicts are compared at the same threshold (the old
path's verdict is the parsed VERDICT line). Last line: one JSON object.

    python tools/bench_review.py --critic smollm2 [--episodes 8] [--max-turns 40]
        [--max-messages N] [--dtype float32] [--few-shot | --no-few-shot] [--privileged]
        [--quantize int8] [--uncached]

A critic directory reviews with its own prompt options and threshold (`review_config.json`)
unless they are given here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Recorder:
    """Reviews with an inner reviewer and records each batch of requests and each release, in order."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.timeline: list[tuple[str, list]] = []

    def review(self, requests):
        # the engine's message lists grow as episodes go on: keep each request's view as it was
        self.timeline.append(
            ("review", [dataclasses.replace(r, messages=list(r.messages)) for r in requests])
        )
        return self.inner.review(requests)

    def release(self, keys) -> None:
        self.timeline.append(("release", list(keys)))


def record(
    episodes: int, error_rate: float, max_turns: int | None, max_revisions: int, privileged: bool = False
) -> list:
    from lightning_asym.envs.retail import RetailEnv
    from lightning_asym.envs.retail.oracle import NoisyOracleBackend
    from lightning_asym.review import RetailRuleCritic
    from lightning_asym.rollout import RolloutEngine, SupervisionConfig

    env = RetailEnv(seed=0)
    engine = RolloutEngine(
        env, max_turns=max_turns, seed=0, supervision=SupervisionConfig(max_revisions, privileged=privileged)
    )
    recorder = Recorder(RetailRuleCritic())
    engine.collect(env.tasks("test")[:episodes], NoisyOracleBackend(error_rate=error_rate), recorder)
    return recorder.timeline


def replay(critic, timeline: list) -> tuple[float, list]:
    """Seconds spent in `review` over the whole timeline, and the reviews in order."""
    seconds, reviews = 0.0, []
    for kind, items in timeline:
        if kind == "release":
            critic.release(items)
            continue
        t0 = time.perf_counter()
        reviews.extend(critic.review(items))
        seconds += time.perf_counter() - t0
    return seconds, reviews


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--critic", default="smollm2", help="tiny, smollm2 or a critic directory")
    p.add_argument("--episodes", type=int, default=8, help="retail test tasks played (one trial each)")
    p.add_argument("--max-turns", type=int, default=None, help="cap each episode (default: the env's)")
    p.add_argument("--error-rate", type=float, default=0.15)
    p.add_argument("--max-revisions", type=int, default=2)
    p.add_argument(
        "--max-messages",
        type=int,
        default=None,
        help="transcript window (default: the critic's own, else all)",
    )
    p.add_argument(
        "--include-policy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the domain policy in the critic's prompt (default: the critic's own, else on)",
    )
    p.add_argument(
        "--privileged",
        action="store_true",
        help="pass the task's privileged text to the critic (supervision)",
    )
    p.add_argument(
        "--few-shot",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="worked examples in the prompt (default: on for the untuned smollm2, else the critic's own)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="revise when P(revise) >= this (default: the critic's, else 0.5)",
    )
    p.add_argument(
        "--dtype", default=None, help="default: bfloat16 where native (backends.hardware), else float32"
    )
    p.add_argument(
        "--quantize", choices=["int8"], default=None, help="also time the scored path with int8 linears"
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--uncached", action="store_true", help="also time the scored path without its cache")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")

    import torch

    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.backends.hardware import fast_dtype
    from lightning_asym.backends.hf import TransformersBackend
    from lightning_asym.review import GenerativeCritic
    from lightning_asym.review.generative import DEFAULT_SAMPLING
    from lightning_asym.review.settings import read_review_config

    torch.set_num_threads(args.threads)
    timeline = record(args.episodes, args.error_rate, args.max_turns, args.max_revisions, args.privileged)
    batches = [items for kind, items in timeline if kind == "review"]
    n = sum(map(len, batches))
    dtype = args.dtype or fast_dtype()
    backend = TransformersBackend(args.critic, dtype=dtype, sampling=SamplingParams())
    saved = read_review_config(args.critic) if os.path.isdir(args.critic) else {}
    few_shot = args.few_shot if args.few_shot is not None else (True if args.critic == "smollm2" else None)
    given = dict(
        include_policy=args.include_policy,
        max_messages=args.max_messages,
        earlier_actions=None,  # only ever the critic directory's own (it changes what the critic reads)
        few_shot=few_shot,
        revise_threshold=args.threshold,
        privileged=True if args.privileged else None,
    )
    # a critic directory's own settings unless given here (the critic was trained on them)
    options = {k: v if v is not None else saved.get(k) for k, v in given.items()}
    options["max_messages"] = options["max_messages"] or "all"
    options["sampling"] = DEFAULT_SAMPLING
    old = GenerativeCritic(backend, mode="generate", **options)
    new = GenerativeCritic(backend, mode="score", **options)
    lengths = [len(new.scorer.ids(new.prompt(r))) for b in batches for r in b]
    print(
        f"{n} reviews in {len(batches)} batches; prompts {statistics.median(lengths):.0f} tokens (median), "
        f"{max(lengths)} max",
        flush=True,
    )

    old_s, old_reviews = replay(old, timeline)
    print(f"old path: {old_s:.1f} s", flush=True)
    new_s, new_reviews = replay(new, timeline)
    print(
        f"new path: {new_s:.1f} s (encoded {new.scorer.encoded_tokens}, reused {new.scorer.reused_tokens} tokens)",
        flush=True,
    )
    parsed = [(o, w) for o, w in zip(old_reviews, new_reviews) if o.parsed]
    scores = [w.score for w in new_reviews if w.score is not None]
    result = {
        "critic": args.critic,
        "dtype": str(dtype).replace("torch.", ""),
        "threads": args.threads,
        "episodes": args.episodes,
        "include_policy": new.include_policy,
        "max_messages": new.max_messages,
        "earlier_actions": new.earlier_actions,
        "privileged": args.privileged,
        "few_shot": new.few_shot,
        "threshold": new.revise_threshold,
        "reviews": n,
        "batches": len(batches),
        "prompt_tokens_median": statistics.median(lengths),
        "old_s_per_review": round(old_s / n, 4),
        "new_s_per_review": round(new_s / n, 4),
        "speedup": round(old_s / new_s, 2),
        "old_unparsed": sum(not o.parsed for o in old_reviews),
        "agreement": round(sum(o.verdict == w.verdict for o, w in zip(old_reviews, new_reviews)) / n, 4),
        "agreement_parsed": round(sum(o.verdict == w.verdict for o, w in parsed) / max(len(parsed), 1), 4),
        "old_revise_rate": round(sum(not o.approved for o in old_reviews) / n, 4),
        "new_revise_rate": round(sum(not w.approved for w in new_reviews) / n, 4),
        "new_p_revise_quartiles": [round(q, 4) for q in statistics.quantiles(scores, n=4)]
        if len(scores) > 1
        else [],
        "new_p_revise_max": round(max(scores, default=0.0), 4),
        "reused_token_share": round(
            new.scorer.reused_tokens / max(new.scorer.reused_tokens + new.scorer.encoded_tokens, 1), 4
        ),
    }
    if args.quantize:
        qbackend = TransformersBackend(
            args.critic, dtype="float32", quantize=args.quantize, sampling=SamplingParams()
        )
        quant = GenerativeCritic(qbackend, mode="score", **options)
        q_s, q_reviews = replay(quant, timeline)
        print(f"new path, {args.quantize}: {q_s:.1f} s", flush=True)
        pairs = [
            (q.score, w.score)
            for q, w in zip(q_reviews, new_reviews)
            if q.score is not None and w.score is not None
        ]
        result[f"{args.quantize}_s_per_review"] = round(q_s / n, 4)
        result[f"{args.quantize}_speedup"] = round(old_s / q_s, 2)
        result[f"{args.quantize}_vs_new_speedup"] = round(new_s / q_s, 2)
        result[f"{args.quantize}_vs_new_verdicts"] = round(
            sum(q.verdict == w.verdict for q, w in zip(q_reviews, new_reviews)) / n, 4
        )
        result[f"{args.quantize}_vs_new_max_abs_p"] = round(
            max((abs(a - b) for a, b in pairs), default=0.0), 4
        )
        result[f"{args.quantize}_agreement_with_old"] = round(
            sum(o.verdict == q.verdict for o, q in zip(old_reviews, q_reviews)) / n, 4
        )
    if args.uncached:
        fresh = GenerativeCritic(backend, mode="score", cache_size=0, **options)
        fresh.scorer.prefix_cache_size = 0
        fresh_s, fresh_reviews = replay(fresh, timeline)
        pairs = [(f.score, w.score) for f, w in zip(fresh_reviews, new_reviews) if f.score is not None]
        result["uncached_s_per_review"] = round(fresh_s / n, 4)
        result["cached_vs_uncached_verdicts"] = round(
            sum(f.verdict == w.verdict for f, w in zip(fresh_reviews, new_reviews)) / n, 4
        )
        result["cached_vs_uncached_max_abs_p"] = round(max((abs(a - b) for a, b in pairs), default=0.0), 6)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
