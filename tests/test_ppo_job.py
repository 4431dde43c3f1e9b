"""`AsymmetricActorCritic`: its phases and argument groups, the privileged text it reads, what it
logs while cloning, and getting a trained model out (load_from_checkpoint, export)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_asym.jobs.ppo_args import OptimArgs, Phase, PhaseArgs, PPOArgs, as_args

CONF = Path(__file__).parent / "conf"
# the tiny fit's actor with a BPE tokenizer trained on the env's texts, as the quickstart's
ENV_BPE_ACTOR = {
    "arch": "llama",
    "tokenizer": "bpe",
    "vocab_size": 400,
    "corpus": "env",
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
}
TINY_ENV = dict(
    num_aspects=1,
    prefs_per_aspect=1,
    num_options=4,
    num_acceptable=1,
    max_turns=3,
    num_train=20,
    num_validation=4,
    num_test=4,
)  # fmt: skip  (tests/conf/fit_tiny.yaml's env)


# ------------------------------------------------------------------ phases and arguments


def test_phase_schedule_clone_then_critic_warmup_then_ppo():
    phases = PhaseArgs(clone_steps=2, critic_warmup_steps=3)
    got = [phases.phase(step, has_critic=True) for step in range(7)]
    assert got == [Phase.CLONE] * 2 + [Phase.CRITIC_WARMUP] * 3 + [Phase.PPO] * 2
    # without a critic there is nothing to warm up
    assert [phases.phase(s, has_critic=False) for s in range(4)] == [Phase.CLONE] * 2 + [Phase.PPO] * 2
    assert PhaseArgs().phase(0, has_critic=True) is Phase.PPO


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: PPOArgs(clip_eps=1.0), "model.init_args.ppo.clip_eps"),
        (lambda: PPOArgs(gamma=1.5), "model.init_args.ppo.gamma"),
        (lambda: PPOArgs(lam=-0.1), "model.init_args.ppo.lam"),
        (lambda: PPOArgs(value_clip=-1.0), "model.init_args.ppo.value_clip"),
        (lambda: PPOArgs(epochs=0), "model.init_args.ppo.epochs"),
        (lambda: PPOArgs(minibatch_size=0), "model.init_args.ppo.minibatch_size"),
        (lambda: OptimArgs(actor_lr=0.0), "model.init_args.optim.actor_lr"),
        (lambda: OptimArgs(critic_lr=-1.0), "model.init_args.optim.critic_lr"),
        (lambda: OptimArgs(weight_decay=-0.1), "model.init_args.optim.weight_decay"),
        (lambda: OptimArgs(max_grad_norm=-1.0), "model.init_args.optim.max_grad_norm"),
        (lambda: PhaseArgs(clone_steps=-1), "model.init_args.phases.clone_steps"),
        (lambda: PhaseArgs(clone_lr=0.0), "model.init_args.phases.clone_lr"),
        (lambda: PhaseArgs(critic_warmup_steps=-2), "model.init_args.phases.critic_warmup_steps"),
        (lambda: as_args(PPOArgs, {"ppo_epochs": 2}, "ppo"), "model.init_args.ppo has no option"),
    ],
)
def test_bad_argument_names_its_yaml_key(build, key):
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build()


def _tiny_modules(privileged: bool = False):
    from lightning_asym.actor import ActorModule
    from lightning_asym.critic import CriticModule

    actor = ActorModule(
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2}
    )
    critic = CriticModule(
        tiny={"arch": "gpt2", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2},
        privileged=privileged,
    )
    return actor, critic


def test_module_refuses_inconsistent_components():
    from lightning_asym.jobs import AsymmetricActorCritic

    actor, _ = _tiny_modules()
    with pytest.raises(ValueError, match=r"model\.init_args\.critic"):
        AsymmetricActorCritic(actor)  # gae without a critic
    with pytest.raises(ValueError, match=r"model\.init_args\.demonstrator"):
        AsymmetricActorCritic(actor, advantage="grpo", phases=PhaseArgs(clone_steps=3))
    with pytest.raises(ValueError, match=r"model\.init_args\.advantage"):
        AsymmetricActorCritic(actor, advantage="gea")


def test_python_built_module_saves_plain_hyperparameters():
    from lightning_asym.jobs import AsymmetricActorCritic

    actor, critic = _tiny_modules()
    m = AsymmetricActorCritic(actor, critic, ppo=PPOArgs(epochs=3), optim={"actor_lr": 1e-3})
    # objects stay out (their weights are in the state dict); the argument groups are plain dicts
    assert set(m.hparams) == {"advantage", "seed", "ppo", "optim", "phases"}
    assert m.hparams["ppo"]["epochs"] == 3 and m.optim.actor_lr == 1e-3
    rebuilt = AsymmetricActorCritic(actor, critic, **{k: v for k, v in m.hparams.items()})
    assert rebuilt.ppo == m.ppo and rebuilt.optim == m.optim


# ------------------------------------------------------------------ privileged text


def test_critic_reads_the_privileged_text_each_trajectory_recorded():
    """The text comes from `Trajectory.privileged`, recorded when the episode started, also for a
    demonstrator's teacher-forced episodes; no env lookup by task id."""
    from lightning_asym.backends.scripted import ScriptedBackend
    from lightning_asym.envs.preferences import ExpertPolicy, PreferencesEnv
    from lightning_asym.jobs import AsymmetricActorCritic
    from lightning_asym.rollout import RolloutEngine

    env = PreferencesEnv(**TINY_ENV)
    tasks = env.tasks("train")[:2]
    trajs = RolloutEngine(env, seed=0).collect(tasks, ScriptedBackend(policy=ExpertPolicy()))
    assert [t.privileged for t in trajs] == [env.privileged(t) for t in tasks] and all(
        t.privileged for t in trajs
    )
    actor, critic = _tiny_modules(privileged=True)
    for t in trajs:
        actor.teacher_force(t, env.tool_schemas)
    assert [t.privileged for t in trajs] == [env.privileged(t) for t in tasks]

    module = AsymmetricActorCritic(actor, critic)  # no trainer, no data module, no env to look in
    trajs[0].privileged = "the user wants option 3"  # what the episode recorded is what counts
    seen = []
    real = critic.values
    critic.values = lambda ts, privileged=None: seen.append(list(privileged)) or real(ts, privileged)
    values = module._critic_values(trajs, width=5)
    assert values.shape == (2, 5)
    assert seen == [["the user wants option 3", trajs[1].privileged]]


# ------------------------------------------------------------------ a tiny run through the CLI


def _scalars(run: Path) -> dict[str, list[int]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


@pytest.fixture(scope="module")
def cloned_run(tmp_path_factory) -> Path:
    """`fit` of tests/conf/fit_tiny.yaml: one cloning step, then one PPO step; the actor's BPE
    tokenizer is trained on the env (as in the quickstart)."""
    cwd = tmp_path_factory.mktemp("fit")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = [
        "fit", "--config", str(CONF / "fit_tiny.yaml"), "--trainer.max_steps", "2",
        "--trainer.log_every_n_steps", "1", "--trainer.enable_progress_bar", "false",
        "--model.init_args.demonstrator", "lightning_asym.envs.preferences.ExpertPolicy",
        "--model.init_args.phases.clone_steps", "1",
        "--model.init_args.actor.init_args.tiny", json.dumps(ENV_BPE_ACTOR),
    ]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_asym.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (run,) = (cwd / "runs" / "fit_tiny").iterdir()
    return run


def test_cloning_logs_the_demonstrators_episodes_under_their_own_names(cloned_run):
    steps = _scalars(cloned_run)
    # step 0 clones: the demonstrator's episodes and the cloning loss; step 1 is PPO: the actor's
    assert steps["train/demo_return"] == [0] and steps["train/demo_success"] == [0]
    assert steps["train/bc_loss"] == [0]  # not frozen at its last value after cloning
    assert steps["train/return"] == [1] and steps["train/success"] == [1]
    assert steps["train/policy_loss"] == [1] and steps["train/ratio_mean"] == [1]
    assert steps["train/value_loss"] == [0, 1]
    assert "hp_metric" not in steps  # the saved hyperparameters bring no placeholder metric


def test_load_from_checkpoint_rebuilds_the_module(cloned_run):
    from lightning_asym.actor import ActorModule
    from lightning_asym.envs.preferences import PreferencesEnv
    from lightning_asym.jobs import AsymmetricActorCritic

    ckpt = cloned_run / "checkpoints" / "epoch=0-step=2.ckpt"
    module = AsymmetricActorCritic.load_from_checkpoint(ckpt)
    saved = torch.load(ckpt, weights_only=True)["state_dict"]
    assert saved.keys() == module.state_dict().keys()
    for k, v in module.state_dict().items():
        assert torch.equal(v, saved[k]), k
    assert module.phases == PhaseArgs(clone_steps=1) and module.ppo.minibatch_size == 2
    assert not module.ppo.mask_truncated_turns and module.optim.actor_lr == 1e-3
    # the actor's tokenizer is the one trained on the env's texts, rebuilt without the env
    env = PreferencesEnv(**TINY_ENV)
    adapted = ActorModule(tiny=ENV_BPE_ACTOR)
    adapted.adapt_to_env(env)
    text = env.corpus()[0]
    assert module.actor.tokenizer(text)["input_ids"] == adapted.tokenizer(text)["input_ids"]
    assert (cloned_run / "hparams.yaml").read_text().strip() != "{}"


def test_export_round_trips_through_transformers_backend(cloned_run, tmp_path):
    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.backends.hf import TransformersBackend
    from lightning_asym.critic import CriticModule
    from lightning_asym.envs.preferences import PreferencesEnv
    from lightning_asym.jobs import AsymmetricActorCritic
    from lightning_asym.rollout import RolloutEngine

    module = AsymmetricActorCritic.load_from_checkpoint(cloned_run / "checkpoints" / "epoch=0-step=2.ckpt")
    out = module.export(tmp_path / "export")
    env = PreferencesEnv(**TINY_ENV)
    tasks = env.tasks("validation")[:2]
    convs = [env.fork().reset(t, 0) for t in tasks]
    greedy = SamplingParams(max_new_tokens=12, temperature=0.0)

    exported = TransformersBackend(model=str(out["actor"]))
    want = module.actor.backend.complete(convs, env.tool_schemas, greedy, seeds=[0, 1])
    got = exported.complete(convs, env.tool_schemas, greedy, seeds=[0, 1])
    assert [c.completion_ids for c in got] == [c.completion_ids for c in want]
    assert all(c.completion_ids for c in got)

    # the critic comes back with its trunk, tokenizer, value head and reading options
    trajs = RolloutEngine(env, seed=0).collect(tasks, module.actor.backend)
    critic = CriticModule.from_export(out["critic"])
    with torch.no_grad():
        torch.testing.assert_close(critic.values(trajs)[0], module.critic.values(trajs)[0])
    for path in out.values():
        card = (path / "README.md").read_text()
        assert "AsymmetricActorCritic" in card and "PreferencesEnv" in card
        assert "rollout batches (optimiser steps): 2" in card and "clone_steps=1" in card
    assert json.loads((out["critic"] / "critic.json").read_text())["include_system"] is True
