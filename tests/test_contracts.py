"""Declared contracts between rooms: data modules that hold an env, objects that hold torch modules."""

from __future__ import annotations

import pytest
import torch
from lightning import LightningDataModule
from toy_env import GuessEnv

from lightning_asym import Supervisor
from lightning_asym.backends import ScriptedBackend
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.openai import OpenAIBackend
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
from lightning_asym.jobs import CriticDataGen, CriticTaskData, RolloutDataModule
from lightning_asym.jobs.contracts import HasEnv
from lightning_asym.review import GenerativeCritic, RetailRuleCritic
from lightning_asym.supervisor import HoldsModules


def test_the_data_modules_that_hold_an_env_declare_it():
    env = GuessEnv(num_tasks=2)
    assert isinstance(RolloutDataModule(env), HasEnv)
    assert isinstance(CriticTaskData(env), HasEnv)
    assert not isinstance(LightningDataModule(), HasEnv)


def test_critic_datagen_refuses_a_data_module_without_an_env():
    class NoEnv(LightningDataModule):
        pass

    module = CriticDataGen(ScriptedBackend(responses=["hi"]))
    module._trainer = type("T", (), {"datamodule": NoEnv()})()  # what a Trainer attaches
    with pytest.raises(ValueError, match="data.class_path: lightning_asym.jobs.CriticTaskData"):
        module.env()


def _tiny() -> TransformersBackend:
    tok = byte_tokenizer()
    return TransformersBackend(tiny_causal_lm(tok, "llama", hidden_size=32, num_layers=2, seed=0), tok)


def test_only_holders_of_torch_modules_are_set_up_and_a_critic_passes_it_on():
    assert isinstance(_tiny(), HoldsModules)
    api = OpenAIBackend(model="m", base_url="http://127.0.0.1:9/v1")
    for plain in (ScriptedBackend(responses=["x"]), api, RetailRuleCritic()):
        assert not isinstance(plain, HoldsModules)
    critic = GenerativeCritic(_tiny())
    sup = Supervisor(ScriptedBackend(responses=["x"]), critic, accelerator="cpu")
    assert type(critic.backend.model).__name__ == "_FabricModule"
    if critic.scorer is not None:  # a scoring critic reads the verdict with the set-up model
        assert critic.scorer.model is critic.backend.model
    assert sup.fabric.device == torch.device("cpu")
