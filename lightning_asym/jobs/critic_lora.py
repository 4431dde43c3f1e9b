"""The LoRA options of `CriticSFT` (`model.init_args.lora`) as a peft `LoraConfig`."""

from __future__ import annotations

from typing import Any

import torch

from lightning_asym.errors import UserError

LLAMA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_DEFAULTS: dict[str, Any] = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": LLAMA_TARGETS,
}
LORA_ALIASES = {"alpha": "lora_alpha", "dropout": "lora_dropout"}
METHODS = ("full", "lora")


def lora_config(model: torch.nn.Module, options: dict[str, Any] | None) -> Any:
    """A peft `LoraConfig` for a causal LM from `lora` options (`alpha`/`dropout` short names work).

    Defaults: r=16, alpha=32, dropout 0.05, every attention and MLP projection of a
    llama-style model; a model without those module names gets `"all-linear"`. `top_layers: k`
    puts adapters on the last k layers only: the backward pass then stops below them (on the
    CPU, k=8 of SmolLM2's 30 layers made a step 2-3 times faster than adapters everywhere).
    """
    try:
        from peft import LoraConfig
    except ImportError as e:  # pragma: no cover - peft is in the lora and dev extras
        raise ImportError(
            "model.init_args.method: lora needs peft; pip install 'lightning-asym[lora]'"
        ) from e
    kwargs = dict(LORA_DEFAULTS)
    for key, value in (options or {}).items():
        kwargs[LORA_ALIASES.get(key, key)] = value
    top = kwargs.pop("top_layers", None)
    if top is not None:  # adapters on the last layers only: backward stops below them
        n = int(getattr(getattr(model, "config", None), "num_hidden_layers", 0) or 0)
        if not 1 <= int(top) <= n:
            raise UserError(
                f"model.init_args.lora.top_layers must be in 1..{n} (the model's layers), got {top}"
            )
        kwargs["layers_to_transform"] = list(range(n - int(top), n))
    if "target_modules" not in (options or {}):
        names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
        if not names & set(LLAMA_TARGETS):
            kwargs["target_modules"] = "all-linear"
    try:
        return LoraConfig(task_type="CAUSAL_LM", **kwargs)
    except TypeError as e:
        raise UserError(
            f"model.init_args.lora: {e}; use peft LoraConfig keys (r, alpha, dropout, ...)"
        ) from e
