"""Environments: the `MultiTurnEnv` protocol, built-in domains and user simulators."""

from lightning_asym.envs.base import MultiTurnEnv, StepResult, error_result, make_env, register_env, registered_envs

__all__ = ["MultiTurnEnv", "StepResult", "error_result", "make_env", "register_env", "registered_envs"]
