"""What `AsymmetricActorCritic` writes about itself: the model card text of its exports, and the
env texts a loaded checkpoint rebuilds its tiny tokenizers from."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lightning_asym.jobs.asym_ac import AsymmetricActorCritic


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
