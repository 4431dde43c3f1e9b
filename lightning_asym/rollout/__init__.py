"""Rollouts: the lock-step engine and the supervision loop (the jobs' data modules drive them)."""

from lightning_asym.rollout.engine import RolloutEngine, episode_seed
from lightning_asym.rollout.supervision import Reviewer, ReviewRequest, SupervisionConfig

__all__ = [
    "RolloutEngine",
    "Reviewer",
    "ReviewRequest",
    "SupervisionConfig",
    "episode_seed",
]
