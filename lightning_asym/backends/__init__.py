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
]
