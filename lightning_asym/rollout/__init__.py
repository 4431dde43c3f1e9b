"""Rollouts: the lock-step engine, the supervision loop and the streaming DataModule."""

from lightning_asym.rollout.datamodule import RolloutDataModule
from lightning_asym.rollout.engine import RolloutEngine, episode_seed
from lightning_asym.rollout.supervision import Reviewer, ReviewRequest, SupervisionConfig

__all__ = [
    "RolloutDataModule",
    "RolloutEngine",
    "Reviewer",
    "ReviewRequest",
    "SupervisionConfig",
    "episode_seed",
]
