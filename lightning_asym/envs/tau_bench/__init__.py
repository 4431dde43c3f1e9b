"""τ-bench (sierra-research/tau-bench, installed separately) behind our env protocol.

`TauBenchEnv` is the adapter (registered as ``tau_bench``); `TauScriptedUser` and
`TauLLMUser` are users that need no litellm; `loader` imports τ-bench with clear errors.
"""

from lightning_asym.envs.tau_bench.env import TauBenchEnv
from lightning_asym.envs.tau_bench.loader import INSTALL_HINT, LITELLM_HINT, TAU_SPLITS
from lightning_asym.envs.tau_bench.users import TauLLMUser, TauScriptedUser

__all__ = ["INSTALL_HINT", "LITELLM_HINT", "TAU_SPLITS", "TauBenchEnv", "TauLLMUser", "TauScriptedUser"]
