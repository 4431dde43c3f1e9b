"""Chat backends: local transformers models, OpenAI-compatible servers, scripted actors."""

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.scripted import ScriptedBackend
from lightning_asym.backends.toolcalls import format_action, parse_action, tools_prompt

__all__ = [
    "ChatBackend",
    "Completion",
    "SamplingParams",
    "ScriptedBackend",
    "format_action",
    "parse_action",
    "tools_prompt",
    "TransformersBackend",
    "OpenAIBackend",
    "byte_tokenizer",
    "bpe_tokenizer",
    "tiny_causal_lm",
    "load_smollm2",
    "convert_smollm2",
    "smollm2_gguf_path",
]

# Backends that need torch/transformers load on first use, so `import lightning_asym.backends` stays cheap.
_LAZY = {
    "TransformersBackend": "lightning_asym.backends.hf",
    "OpenAIBackend": "lightning_asym.backends.openai",
    "byte_tokenizer": "lightning_asym.backends.tiny",
    "bpe_tokenizer": "lightning_asym.backends.tiny",
    "tiny_causal_lm": "lightning_asym.backends.tiny",
    "load_smollm2": "lightning_asym.backends.smollm2",
    "convert_smollm2": "lightning_asym.backends.smollm2",
    "smollm2_gguf_path": "lightning_asym.backends.smollm2",
}


def __getattr__(name: str):  # noqa: ANN202 - module-level lazy attribute (PEP 562)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
