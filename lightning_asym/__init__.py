"""lightning_asym: asymmetric actor-critic for multi-turn LLM agents."""

__version__ = "0.1.0"
