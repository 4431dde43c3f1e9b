"""Contracts between the jobs' LightningModules and their data modules, declared, not duck-typed."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from lightning_asym.envs.base import MultiTurnEnv


@runtime_checkable
class HasEnv(Protocol):
    """A data module whose episodes are played in one env, exposed as `env`.

    `RolloutDataModule` and `CriticTaskData` keep it; `AsymmetricActorCritic` (tokenizer and
    tool schemas) and `CriticDataGen` (self-play) read it from `trainer.datamodule`. A custom data
    module gives these jobs an env by having an `env` attribute holding a `MultiTurnEnv`.
    """

    env: MultiTurnEnv
