"""Loading a local causal LM and its tokenizer: `"tiny"`, `"smollm2"` or a transformers directory."""

from __future__ import annotations

from typing import Any

import torch

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """`"bfloat16"`/`"bf16"`/... or a `torch.dtype` -> `torch.dtype`; None and "auto" stay None."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return None if dtype == "auto" else dtype  # type: ignore[return-value]
    if dtype not in _DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)}")
    return _DTYPES[dtype]


def load_model_and_tokenizer(
    model: str,
    tokenizer: str | None = None,
    tiny: dict[str, Any] | None = None,
    dtype: str | torch.dtype | None = None,
) -> tuple[Any, Any]:
    """`"tiny"` (options in `tiny`), `"smollm2"`, or a local transformers directory.

    `dtype` defaults to float32; "auto" keeps a directory's stored dtype.
    """
    resolved = resolve_dtype(dtype)
    if model == "tiny":
        from lightning_asym.backends.tiny import build_tiny

        m, tok = build_tiny(**(tiny or {}))
        return (m.to(resolved) if resolved is not None else m), tok
    if model == "smollm2":
        from lightning_asym.backends.smollm2 import load_smollm2

        return load_smollm2(dtype=resolved or torch.float32)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    auto = dtype == "auto"
    m = AutoModelForCausalLM.from_pretrained(model, dtype="auto" if auto else (resolved or torch.float32))
    return m, AutoTokenizer.from_pretrained(tokenizer or model)
