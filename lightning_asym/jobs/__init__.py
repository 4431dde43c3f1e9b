"""Jobs: every LightningModule and LightningDataModule that `lightning-asym` runs.

* evaluate a fixed actor, alone or supervised (`lightning-asym test`): `SupervisedAgent`
  over `RolloutDataModule`;
* train the critic: `CriticDataGen` over `CriticTaskData` (`predict`: self-play data), then
  `CriticSFT` over `CriticDataModule` (`fit`);
* train the actor: `AsymmetricActorCritic` over `RolloutDataModule` (`fit`).

The models they train (`ActorModule`, `CriticModule`) live in `lightning_asym.actor` and
`lightning_asym.critic`; the rooms below do the work.
"""

from lightning_asym.jobs.asym_ac import AsymmetricActorCritic
from lightning_asym.jobs.critic_data import CriticDataModule
from lightning_asym.jobs.critic_datagen import CriticDataGen
from lightning_asym.jobs.critic_sft import CriticSFT
from lightning_asym.jobs.critic_tasks import CriticTaskData
from lightning_asym.jobs.rollout_data import RolloutDataModule
from lightning_asym.jobs.supervised_agent import SupervisedAgent

__all__ = [
    "AsymmetricActorCritic",
    "CriticDataGen",
    "CriticDataModule",
    "CriticSFT",
    "CriticTaskData",
    "RolloutDataModule",
    "SupervisedAgent",
]
