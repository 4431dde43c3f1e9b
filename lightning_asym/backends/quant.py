"""Dynamic int8 linears for CPU inference (`TransformersBackend(quantize="int8")`).

On a CPU, a small critic's review is compute-bound in its linear layers. Dynamic quantization
stores each `nn.Linear` weight as int8 (per output channel) and quantizes activations on the
fly, so the matmuls run on int8 kernels (fbgemm on x86). On the 2-core AVX2-only EPYC of
`../shared/PERF.md`, one core ran SmolLM2-135M's linears 2.09x faster than in float32
(`tools/bench_review.py --quantize int8` measures the whole review: 1.8x per scored review). It
is for inference only: the quantized modules hold no trainable parameters.

**Scores move, and for a fine-tuned SmolLM2 critic too much.** Activations are quantized per
tensor, and small models have outlier activations: on recorded retail reviews the privileged
SmolLM2-135M critic's P(revise) moved by up to 0.66 (mean 0.19 on 24 in-loop proposals, with or
without the output head quantized), and verdicts agreed with float32 on only 80 % of 60 reviews
(2026-12-01). A supervised evaluation with it flagged twice the proposals its calibration
predicted. Use it only where `tools/bench_review.py --quantize int8` shows verdict agreement at
the calibrated threshold that you can accept.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

QUANTIZE_MODES = ("int8",)


def quantize_linears(model: Any, mode: str = "int8") -> Any:
    """`model` with every `nn.Linear` replaced by a dynamically quantized int8 linear (in place).

    Raises `ValueError` for an unknown `mode` or a model not on the CPU, and `RuntimeError` when
    this torch build has no dynamic quantization (`torch.ao.quantization`).
    """
    if mode not in QUANTIZE_MODES:
        raise ValueError(f"quantize must be one of {QUANTIZE_MODES} or null, got {mode!r}")
    devices = {p.device.type for p in model.parameters()}
    if devices - {"cpu"}:
        raise ValueError(
            f"quantize: {mode} is for CPU inference; the model is on {sorted(devices)}: "
            "drop quantize, or load the model on the CPU"
        )
    try:
        from torch.ao.quantization import quantize_dynamic
    except ImportError as e:  # pragma: no cover - depends on the torch build
        raise RuntimeError(
            f"quantize: {mode} needs torch.ao.quantization.quantize_dynamic, which torch "
            f"{torch.__version__} does not have; drop quantize"
        ) from e
    if "fbgemm" in torch.backends.quantized.supported_engines:
        torch.backends.quantized.engine = "fbgemm"
    with warnings.catch_warnings():
        # torch >= 2.9 marks the eager-mode API deprecated; it is what runs int8 linears on CPUs here
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        return quantize_dynamic(model.eval(), {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
