"""Environments: the `MultiTurnEnv` protocol, built-in domains and user simulators."""

from lightning_asym.envs.base import (
    MultiTurnEnv,
    StepResult,
    error_result,
    make_env,
    register_env,
    registered_envs,
)
from lightning_asym.envs.preferences import PreferencesEnv  # registers "preferences"
from lightning_asym.envs.retail import RetailEnv  # registers "retail"
from lightning_asym.envs.tau_bench import TauBenchEnv  # registers "tau_bench" (imports tau-bench lazily)
from lightning_asym.envs.users import LLMUser, UserSimulator

__all__ = [
    "LLMUser",
    "MultiTurnEnv",
    "PreferencesEnv",
    "RetailEnv",
    "StepResult",
    "TauBenchEnv",
    "UserSimulator",
    "error_result",
    "make_env",
    "register_env",
    "registered_envs",
]
