"""LightningModules, one per job: evaluate (`SupervisedAgent`), train the critic, train the actor."""

from lightning_asym.tasks.asym_ac import AsymmetricActorCritic
from lightning_asym.tasks.critic_data import CriticDataModule
from lightning_asym.tasks.critic_sft import CriticSFT
from lightning_asym.tasks.supervised_agent import SupervisedAgent

__all__ = ["AsymmetricActorCritic", "CriticDataModule", "CriticSFT", "SupervisedAgent"]
