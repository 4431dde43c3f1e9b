"""Which float type the hardware computes fast: bfloat16 only where it is native.

bfloat16 halves memory traffic, and on GPUs and on CPUs with AVX512-BF16 or AMX it is also the
faster arithmetic (SmolLM2-135M reviews: 1.73x faster than float32 on a 2-core AVX512-BF16 EPYC).
On a CPU without them (AVX2 only), torch emulates it: a 512x576x1536 matmul ran at 4.4 GFLOP/s in
bfloat16 against 31 GFLOP/s in float32 on one core of a 2-core AVX2 EPYC, 7x slower. Defaults that
used to say bfloat16 ask `fast_dtype()` instead.
"""

from __future__ import annotations

import torch


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """True where bfloat16 matmuls run natively: a CUDA device that supports them, or a CPU with
    AVX512-BF16 or AMX tiles."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def fast_dtype(device: str | torch.device = "cpu") -> str:
    """`"bfloat16"` where it is native (`native_bf16`), else `"float32"`. The default device is the
    CPU, where `TransformersBackend` loads a model unless given another."""
    return "bfloat16" if native_bf16(device) else "float32"
