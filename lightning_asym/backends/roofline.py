"""The decode ceiling of a causal LM on this machine: how many tokens a second the hardware allows.

One decode step for `batch` rows reads every weight once and each row's KV cache once, and does
`2 x params` FLOPs per row for the linears (the tied LM head included) plus the attention's
`4 x layers x heads x head_dim` per context token. The step can go no faster than the slower of
moving those bytes at the measured read bandwidth and doing those FLOPs at the measured matmul
rate; the ceiling is `batch` tokens per that time. `tools/bench_rollout.py` prints it beside the
engine's measured decode rate.

    model = ModelCost.of(hf_model)
    hw = measure(torch.float32)                      # ~1 s: a large read and a large matmul
    ceiling = decode_ceiling(model, hw, batch=32, context=600)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class ModelCost:
    """What one decode step of one row costs, independent of the machine."""

    params: int
    """Parameters, each counted once (tied embeddings are one matrix, read by the LM head)."""
    weight_bytes: int
    """Bytes of those parameters (read once per step, whatever the batch)."""
    kv_bytes_per_token: int
    """Bytes of keys and values per context token, all layers: `2 x layers x kv_heads x head_dim x size`."""
    attn_flops_per_token: int
    """Attention FLOPs per context token of one new token: `4 x layers x heads x head_dim`."""

    @classmethod
    def of(cls, model: Any) -> ModelCost:
        """The costs of a transformers causal LM (its config and parameters)."""
        cfg = model.config
        heads = cfg.num_attention_heads
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        params = list(model.parameters())
        size = params[0].element_size()
        return cls(
            params=sum(p.numel() for p in params),
            weight_bytes=sum(p.numel() * p.element_size() for p in params),
            kv_bytes_per_token=2 * cfg.num_hidden_layers * kv_heads * head_dim * size,
            attn_flops_per_token=4 * cfg.num_hidden_layers * heads * head_dim,
        )


@dataclass(frozen=True)
class Hardware:
    """Measured rates of this machine, for the threads and dtype they were measured with."""

    read_bytes_per_s: float
    matmul_flops_per_s: float


@dataclass(frozen=True)
class Ceiling:
    tokens_per_s: float
    bound: str
    """`"memory"` or `"compute"`: which limit sets the ceiling."""
    step_s: float


def decode_ceiling(model: ModelCost, hw: Hardware, batch: int, context: float) -> Ceiling:
    """The most tokens per second `batch` rows with `context` tokens of cache each can decode."""
    if batch < 1 or context < 0:
        raise ValueError(f"batch must be >= 1 and context >= 0, got {batch} and {context}")
    read = model.weight_bytes + batch * context * model.kv_bytes_per_token
    flops = batch * (2 * model.params + context * model.attn_flops_per_token)
    mem_s, flop_s = read / hw.read_bytes_per_s, flops / hw.matmul_flops_per_s
    step = max(mem_s, flop_s)
    return Ceiling(batch / step, "memory" if mem_s >= flop_s else "compute", step)


def _best(fn: Any, repeats: int) -> float:
    fn()  # first-touch and kernel selection do not count
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(
    dtype: torch.dtype = torch.float32, read_mib: int = 512, n: int = 2048, repeats: int = 3
) -> Hardware:
    """Read bandwidth (a float32 sum over `read_mib` MiB, larger than any cache: bytes are bytes) and
    matmul rate (an `n`-cubed matmul in `dtype`), best of `repeats`, on torch's current threads."""
    x = torch.ones(read_mib * 2**20 // 4)
    read_s = _best(lambda: x.sum(dtype=torch.float32), repeats)
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    mm_s = _best(lambda: a @ b, repeats)
    return Hardware(x.numel() * x.element_size() / read_s, 2 * n**3 / mm_s)
