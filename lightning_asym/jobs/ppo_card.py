"""What `AsymmetricActorCritic` writes about itself: its hyperparameters, a PPO step's metrics, the
random state and env texts its checkpoints keep (a resumed run replays the uninterrupted one; a loaded one rebuilds its
tiny tokenizers), and the model card text of its exports."""

from __future__ import annotations

import random
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lightning_asym import rl

if TYPE_CHECKING:
    from lightning_asym.jobs.asym_ac import AsymmetricActorCritic


def save_hparams(module: AsymmetricActorCritic, plain: dict[str, Any]) -> None:
    """Save hyperparameters that `load_from_checkpoint` can rebuild `module` from."""
    try:  # set by LightningCLI while it builds the module (Lightning >= 2.3)
        from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
    except ImportError:  # pragma: no cover
        _given_hyperparameters = None
    if _given_hyperparameters is not None and _given_hyperparameters.get() is not None:
        # LightningCLI is building the module and hands over the run's model config, the
        # components as class_path/init_args: checkpoints then rebuild the whole module
        module.save_hyperparameters(frame=None)
    else:
        # built in Python the components are objects, whose weights are in the state dict
        # anyway: pass them again, `load_from_checkpoint(ckpt, actor=..., critic=...)`
        groups = {"ppo": asdict(module.ppo), "optim": asdict(module.optim), "phases": asdict(module.phases)}
        module.save_hyperparameters({**plain, **groups})


def train_metrics(
    module: AsymmetricActorCritic,
    trajs: list[Any],
    stats: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]],
    returns: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    rollout_s: float,
) -> dict[str, torch.Tensor]:
    """The `train/*` metrics of one PPO step: each minibatch statistic of `stats` (values and the
    token or turn counts they were taken over), and what the rollout batch shows."""
    n = len(trajs)
    # a minibatch without a valid token (every turn cut off) says nothing about the ratio or
    # the KL: it is left out of each statistic, and a statistic no minibatch measured is not logged
    log = {
        f"train/{k}": rl.nonempty_mean(torch.stack(v), torch.stack(c))
        for k, (v, c) in stats.items()
        if bool((torch.stack(c) > 0).any())
    }
    kl = log.pop("train/kl_ref", log.get("train/approx_kl"))
    if kl is not None:
        log["train/kl"] = kl
    log["train/return"] = torch.tensor(sum(t.reward for t in trajs) / n)
    log["train/success"] = torch.tensor(sum(t.success for t in trajs) / n)
    log["train/turns"] = torch.tensor(sum(t.num_turns for t in trajs) / n)
    generated = sum(len(t.completion_ids) for traj in trajs for t in traj.turns)
    log["train/tokens_per_s"] = torch.tensor(generated / max(rollout_s, 1e-9))
    turns = [t for traj in trajs for t in traj.turns if t.completion_ids]
    log["train/truncated_turns"] = torch.tensor(
        sum(module.actor.cut_off(t) for t in turns) / max(len(turns), 1)
    )
    if module.critic is not None:
        log["train/explained_variance"] = rl.explained_variance(values, returns, mask)
    return log


def rng_state() -> dict[str, Any]:
    """torch, Python and numpy random states in plain types (checkpoints load with weights_only=True)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def save_state(module: AsymmetricActorCritic, checkpoint: dict[str, Any]) -> None:
    """What a checkpoint carries beside the weights: RNG states, the env texts of tiny tokenizers,
    the training record of the model card."""
    checkpoint["rng"] = rng_state()
    if module._corpus is not None:
        checkpoint["env_corpus"] = module._corpus
    checkpoint["training"] = training_record(module)


def load_state(module: AsymmetricActorCritic, checkpoint: dict[str, Any]) -> None:
    """`save_state` undone, and the models built so that the checkpoint's weights can load next."""
    if checkpoint.get("rng"):
        set_rng_state(checkpoint["rng"])
    # without a trainer (load_from_checkpoint) tiny tokenizers trained on the env's texts are
    # rebuilt from the texts the checkpoint kept, before its weights are loaded; in a resumed
    # fit setup() has done it already and this does nothing
    if checkpoint.get("env_corpus") is not None:
        module._corpus = list(checkpoint["env_corpus"])
        for m in (module.actor, module.critic):
            if m is not None:
                m.adapt_to_env(EnvCorpus(module._corpus))
    module.configure_model()  # load_from_checkpoint loads the weights next, into built models
    module._trained = dict(checkpoint.get("training") or {})


class EnvCorpus:
    """The texts of an env's `corpus()` without the env (`adapt_to_env` reads only `corpus()`)."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)

    def corpus(self) -> list[str]:
        return self.texts


def training_record(module: AsymmetricActorCritic) -> dict[str, Any]:
    """Plain facts about the module's run for model cards and checkpoints: steps and env (what a
    loaded checkpoint recorded, updated from the trainer when there is one)."""
    from lightning_asym.jobs.contracts import HasEnv

    trainer = module._trainer
    dm = trainer.datamodule if trainer is not None else None
    record = dict(module._trained)
    if trainer is not None:
        record["steps"] = int(module.global_step)
    if isinstance(dm, HasEnv):
        env = dm.env
        record["env"] = f"{type(env).__module__}.{type(env).__qualname__}"
        record["env_name"] = str(getattr(env, "name", ""))
    return record


def training_card(module: AsymmetricActorCritic, record: dict[str, Any]) -> str:
    """Markdown: how the module's actor and critic were trained (job, env, steps, arguments)."""
    steps = record.get("steps")
    env = record.get("env")
    lines = [
        "Trained with `lightning_asym.jobs.AsymmetricActorCritic`: PPO on fresh multi-turn rollouts, "
        "turn-level advantages"
        + (
            " from a value critic (GAE)"
            if module.advantage == "gae"
            else f" from {module.advantage} group baselines"
        )
        + ", the actor's policy loss on the tokens it sampled.",
        "",
        f"- env: `{env}`" + (f" (`{record['env_name']}`)" if record.get("env_name") else "")
        if env
        else "- env: unknown",
        f"- rollout batches (optimiser steps): {steps}" if steps is not None else "- steps: unknown",
        f"- advantage: `{module.advantage}`; critic: "
        + (
            "none"
            if module.critic is None
            else f"`{type(module.critic).__name__}`"
            + (" (privileged: reads the task's hidden information)" if module.critic.privileged else "")
        ),
    ]
    if module.phases.clone_steps:
        lines.append(
            f"- behaviour cloning of `{type(module._demo.policy).__name__}` for the first "
            f"{module.phases.clone_steps} steps, then {module.phases.critic_warmup_steps} critic warm-up steps"
        )
    for name, group in (("ppo", module.ppo), ("optim", module.optim), ("phases", module.phases)):
        args = ", ".join(f"{k}={v}" for k, v in asdict(group).items())
        lines.append(f"- `{name}`: {args}")
    return "\n".join(lines)
