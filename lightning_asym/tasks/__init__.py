"""LightningModules, one per job: evaluate (`SupervisedAgent`), train the critic, train the actor."""

from lightning_asym.tasks.supervised_agent import SupervisedAgent

__all__ = ["SupervisedAgent"]
