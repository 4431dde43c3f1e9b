"""Multi-turn rollout throughput: `RolloutEngine` + `TransformersBackend` against two HF-generate loops.

The naive loop plays each episode alone and, every turn, re-renders and re-tokenizes the whole
conversation and calls HF `model.generate` on it (greedy, batch of one). The batched baseline is
what an HF-generate rollout path gives: one left-padded `model.generate` per turn over all live
episodes, re-encoding every conversation (no KV kept between turns). The engine plays all
episodes in lock-step: one forward per decoding step for every live episode, and each
episode's KV cache kept across turns. Same model, same prompt text, same episodes
(`PreferencesEnv` test tasks, scripted user), greedy decoding.

The roofline: the bench measures this machine's read bandwidth and matmul rate (threads and
dtype as the run's) and, for each of the engine's one-token decode steps (its batch and its
rows' context), the time the hardware needs at least (`backends.roofline`); `decode_share` is
that time over the measured one, i.e. the engine's share of the decode ceiling.

    python tools/bench_rollout.py [--model tiny|smollm2|DIR] [--episodes 8] [--turns 6] [--max-new-tokens 32]

The last line of output is one JSON object: engine_tok_s, naive_tok_s, batched_tok_s, speedup
(against naive), speedup_batched, the roofline figures, and the wall time of each turn index. On
a shared machine wall time is noisy; `speedup_cpu_time` compares process CPU time instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.hardware import fast_dtype
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.roofline import Hardware, ModelCost, decode_ceiling, measure
from lightning_asym.backends.toolcalls import parse_action
from lightning_asym.types import Message, Task, to_dict


class NaiveGenerate(ChatBackend):
    """One conversation at a time: render, tokenize everything, `model.generate`."""

    def __init__(self, model: Any, tokenizer: Any, render: Callable[..., str], eos_ids: list[int]) -> None:
        self.model, self.tokenizer, self.render, self.eos_ids = model, tokenizer, render, eos_ids

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        return [c for conv in conversations for c in self.generate([conv], tools, sampling)]

    def generate(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None,
        sampling: SamplingParams | None,
    ) -> list[Completion]:
        """One left-padded greedy `model.generate` over `conversations`, each re-encoded whole."""
        assert sampling is not None and sampling.greedy
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        rows = [
            self.tokenizer(self.render(conv, True, tools), add_special_tokens=False)["input_ids"]
            for conv in conversations
        ]
        width = max(map(len, rows))
        ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
        with torch.no_grad():
            gen = self.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=sampling.max_new_tokens,
                do_sample=False,
                eos_token_id=self.eos_ids,
                pad_token_id=pad,
            )
        out = []
        for i, row in enumerate(rows):
            new = gen[i, width:].tolist()
            end = next((j + 1 for j, t in enumerate(new) if t in self.eos_ids), len(new))
            new = new[:end]  # a row that finished early is padded to the longest: cut after its end of turn
            text = self.tokenizer.decode(new, skip_special_tokens=True)
            action, err = parse_action(text)
            out.append(
                Completion(
                    text=text,
                    action=action,
                    parse_error=err,
                    completion_ids=new,
                    num_prompt_tokens=len(row),
                    num_completion_tokens=len(new),
                )
            )
        return out


class BatchedGenerate(NaiveGenerate):
    """All conversations of a call in one left-padded `model.generate`; nothing kept between turns."""

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):  # noqa: ANN001, ANN201
        return self.generate(conversations, tools, sampling)


class DecodeSteps:
    """Wraps a `TransformersBackend`'s forward: times its one-token forwards (decode steps, and the
    last prompt token after grouped prefill) and, per step, the
    time the hardware needs at least (`roofline.decode_ceiling` at the step's batch and context)."""

    def __init__(self, backend: TransformersBackend, hw: Hardware) -> None:
        self.inner, self.cost, self.hw = backend._forward, ModelCost.of(backend.model), hw
        self.seconds = self.floor_seconds = 0.0
        self.steps = self.rows = 0
        self.context = 0.0
        backend._forward = self  # type: ignore[method-assign]

    def __call__(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        if ids.shape[1] != 1:
            return self.inner(ids, mask, pos, cache)
        t0 = time.perf_counter()
        out = self.inner(ids, mask, pos, cache)
        self.seconds += time.perf_counter() - t0
        batch, context = int(ids.shape[0]), float(mask.sum(-1).float().mean())
        self.floor_seconds += decode_ceiling(self.cost, self.hw, batch, context).step_s
        self.steps, self.rows, self.context = (
            self.steps + 1,
            self.rows + batch,
            self.context + context * batch,
        )
        return out


class Timed(ChatBackend):
    """Delegates to `inner`, recording wall time and generated tokens per turn index."""

    def __init__(self, inner: ChatBackend) -> None:
        self.inner = inner
        self.seconds: dict[int, float] = defaultdict(float)
        self.cpu_seconds: dict[int, float] = defaultdict(float)
        self.tokens: dict[int, int] = defaultdict(int)
        self.prompt_tokens: dict[int, int] = defaultdict(int)

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):  # noqa: ANN001, ANN201
        turn = sum(m.role == "assistant" for m in conversations[0])
        t0, c0 = time.perf_counter(), time.process_time()
        out = self.inner.complete(conversations, tools, sampling, keys=keys, seeds=seeds)
        self.seconds[turn] += time.perf_counter() - t0
        self.cpu_seconds[turn] += time.process_time() - c0
        self.tokens[turn] += sum(c.num_completion_tokens for c in out)
        self.prompt_tokens[turn] += sum(c.num_prompt_tokens for c in out)
        return out

    def start(self, key: Hashable, task: Task) -> None:
        self.inner.start(key, task)

    def release(self, keys: Sequence[Hashable]) -> None:
        self.inner.release(keys)

    def summary(self) -> tuple[float, int, float]:
        return sum(self.seconds.values()), sum(self.tokens.values()), sum(self.cpu_seconds.values())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", default="tiny", help='"tiny" (random tiny Llama), "smollm2" or a local directory'
    )
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--turns", type=int, default=6)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (0: torch's default). 1 by default: on a shared CPU, OpenMP threads spin-wait "
        "for each other and timings become erratic",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dtype",
        default=None,
        help="weights and activations of the model both sides run: bfloat16 or float32 (default: "
        "backends.hardware.fast_dtype(), bfloat16 where native: on a CPU with AVX512-BF16 it makes a "
        "batch of 8 rows cost 1.6x one row instead of 3.6x; an AVX2-only CPU emulates it 7x slower)",
    )
    p.add_argument(
        "--tools-last",
        dest="tools_first",
        action="store_false",
        help="tool instructions after the policy in the system message (the default puts them first; "
        "both sides always see the same prompts)",
    )
    p.add_argument("--skip-naive", action="store_true", help="do not time the naive loop")
    p.add_argument("--skip-batched", action="store_true", help="do not time the batched re-encoding baseline")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    if args.threads:
        torch.set_num_threads(args.threads)

    from lightning_asym.envs.preferences import PreferencesEnv
    from lightning_asym.rollout.engine import RolloutEngine

    t0 = time.perf_counter()
    tiny = (
        {"arch": "llama", "hidden_size": 64, "num_layers": 2, "num_heads": 4}
        if args.model == "tiny"
        else None
    )
    backend = TransformersBackend(
        args.model, tiny=tiny, tools_first=args.tools_first, dtype=args.dtype or fast_dtype()
    )
    load_s = time.perf_counter() - t0
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0)
    env = PreferencesEnv(
        seed=args.seed, max_turns=args.turns, num_train=0, num_validation=0, num_test=args.episodes
    )
    tasks = env.tasks("test")[: args.episodes]
    engine = RolloutEngine(env, max_turns=args.turns, sampling=sampling, seed=args.seed)
    naive = NaiveGenerate(backend.model, backend.tokenizer, backend.render, backend.eos_ids)
    batched = BatchedGenerate(backend.model, backend.tokenizer, backend.render, backend.eos_ids)
    dtype = next(backend.model.parameters()).dtype
    hw = measure(dtype)

    # Warm-up: first-call costs (allocator, kernels) should not count for either side.
    warm = [Message("user", "Hello!")]
    backend.complete([warm], None, SamplingParams(max_new_tokens=2, temperature=0))
    naive.complete([warm], None, SamplingParams(max_new_tokens=2, temperature=0))
    steps = DecodeSteps(backend, hw)  # the engine's decode steps from here on

    timed_engine = Timed(backend)
    trajs = engine.collect(tasks, timed_engine)
    eng_s, eng_tok, eng_cpu = timed_engine.summary()

    timed_naive = Timed(naive)
    naive_trajs = []
    if not args.skip_naive:
        for task in tasks:  # each episode alone
            naive_trajs += engine.collect([task], timed_naive)
    naive_s, naive_tok, naive_cpu = timed_naive.summary()

    timed_batched = Timed(batched)
    batched_trajs = [] if args.skip_batched else engine.collect(tasks, timed_batched)  # re-encoded every turn
    batched_s, batched_tok, _ = timed_batched.summary()
    mean_context = steps.context / steps.rows if steps.rows else 0.0
    ceiling = decode_ceiling(steps.cost, hw, len(tasks), mean_context)

    turns = sorted(timed_engine.seconds)
    result = {
        "model": args.model,
        "episodes": len(tasks),
        "turns": args.turns,
        "max_new_tokens": args.max_new_tokens,
        "tools_first": args.tools_first,
        "dtype": str(next(backend.model.parameters()).dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 2),
        "engine_s": round(eng_s, 3),
        "engine_tokens": eng_tok,
        "engine_tok_s": round(eng_tok / eng_s, 2),
        "naive_s": round(naive_s, 3),
        "naive_tokens": naive_tok,
        "naive_tok_s": round(naive_tok / naive_s, 2) if naive_s else None,
        "speedup": round((eng_tok / eng_s) / (naive_tok / naive_s), 2) if naive_s and naive_tok else None,
        "engine_cpu_s": round(eng_cpu, 3),
        "naive_cpu_s": round(naive_cpu, 3),
        "speedup_cpu_time": round((eng_tok / eng_cpu) / (naive_tok / naive_cpu), 2)
        if naive_cpu and naive_tok
        else None,
        "batched_s": round(batched_s, 3),
        "batched_tokens": batched_tok,
        "batched_tok_s": round(batched_tok / batched_s, 2) if batched_s else None,
        "speedup_batched": round((eng_tok / eng_s) / (batched_tok / batched_s), 2)
        if batched_s and batched_tok
        else None,
        "read_gb_s": round(hw.read_bytes_per_s / 1e9, 2),
        "matmul_gflop_s": round(hw.matmul_flops_per_s / 1e9, 1),
        "decode_steps": steps.steps,
        "decode_rows": steps.rows,
        "decode_rows_mean": round(steps.rows / steps.steps, 2) if steps.steps else None,
        "decode_context_mean": round(mean_context, 1),
        "engine_decode_tok_s": round(steps.rows / steps.seconds, 2) if steps.seconds else None,
        # the ceiling at the full batch and the steps' mean context, and its binding limit
        "ceiling_tok_s": round(ceiling.tokens_per_s, 1),
        "ceiling_bound": ceiling.bound,
        # the least time the hardware needs for the engine's decode steps, over their measured time
        "decode_share": round(steps.floor_seconds / steps.seconds, 3) if steps.seconds else None,
        "engine_turn_s": [round(timed_engine.seconds[t], 3) for t in turns],
        "naive_turn_s": [round(timed_naive.seconds[t], 3) for t in sorted(timed_naive.seconds)],
        "engine_turn_tokens": [timed_engine.tokens[t] for t in turns],
        "naive_turn_tokens": [timed_naive.tokens[t] for t in sorted(timed_naive.tokens)],
        "engine_turn_prompt_tokens": [timed_engine.prompt_tokens[t] for t in turns],
        "engine_episode_turns": [t.num_turns for t in trajs],
        # Greedy decoding of the same model: the two sides should write the same conversations.
        # In bfloat16 a batched matmul may round differently from a batch of one, so a near-tie
        # can flip a token; this counts the episodes whose messages agree exactly.
        "same_episodes": sum(
            [to_dict(m) for m in a.messages] == [to_dict(m) for m in b.messages]
            for a, b in zip(trajs, naive_trajs)
        )
        if naive_trajs
        else None,
        "naive_episode_turns": [t.num_turns for t in naive_trajs],
        "same_episodes_batched": sum(
            [to_dict(m) for m in a.messages] == [to_dict(m) for m in b.messages]
            for a, b in zip(trajs, batched_trajs)
        )
        if batched_trajs
        else None,
    }
    print(
        f"model {args.model}: {len(tasks)} episodes x {args.turns} turns, max_new_tokens {args.max_new_tokens}"
    )
    print(f"{'turn':>4} {'engine s':>9} {'tokens':>7} {'naive s':>9} {'tokens':>7}")
    for t in turns:
        ns = timed_naive.seconds.get(t, 0.0)
        print(
            f"{t:>4} {timed_engine.seconds[t]:>9.3f} {timed_engine.tokens[t]:>7} {ns:>9.3f} {timed_naive.tokens.get(t, 0):>7}"
        )
    print(
        f"engine {result['engine_tok_s']} tok/s, naive {result['naive_tok_s']} tok/s (speedup {result['speedup']}x), "
        f"batched re-encoding {result['batched_tok_s']} tok/s (speedup {result['speedup_batched']}x)"
    )
    print(
        f"roofline: read {result['read_gb_s']} GB/s, matmul {result['matmul_gflop_s']} GFLOP/s; decode ceiling "
        f"{result['ceiling_tok_s']} tok/s at {len(tasks)} rows x {result['decode_context_mean']} context "
        f"({ceiling.bound}-bound); engine decode {result['engine_decode_tok_s']} tok/s over "
        f"{result['decode_rows_mean']} rows a step, {result['decode_share']:.1%} of the ceiling for its steps"
        if steps.seconds
        else "roofline: no decode step was timed"
    )
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
