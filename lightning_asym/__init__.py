"""lightning_asym: asymmetric actor-critic for multi-turn LLM agents."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Supervisor", "__version__"]


def __getattr__(name: str) -> Any:
    # lazy, so `import lightning_asym.types` stays free of torch and Lightning
    if name == "Supervisor":
        from lightning_asym.supervisor import Supervisor

        return Supervisor
    raise AttributeError(f"module 'lightning_asym' has no attribute {name!r}")
