"""The argument groups of `AsymmetricActorCritic` and its training phases.

Each group is a small dataclass, one YAML mapping under `model.init_args` (as litgpt's
`args.py`): `ppo` (the update of each rollout batch), `optim` (the two optimisers) and
`phases` (behaviour cloning, then critic warm-up, then PPO). jsonargparse documents each field
from its docstring and validates `Literal` choices; `__post_init__` checks ranges and names the
YAML key of a bad value.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Literal

Advantage = Literal["gae", "grpo", "rloo"]
"""`gae`: turn-level GAE from the value critic; `grpo` / `rloo`: critic-free group baselines."""

KEY = "model.init_args"


def _check(ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{KEY}.{key} must be {rule}, got {value!r}")


@dataclass
class PPOArgs:
    """How each rollout batch updates the actor and the critic (`model.init_args.ppo`).

    Args:
        gamma: discount per turn in [0, 1] (1: the end-of-episode reward reaches every turn undiminished).
        lam: GAE lambda over turns in [0, 1] (1: Monte-Carlo returns, 0: one-turn TD errors).
        clip_eps: PPO's clip of the probability ratio, in [0, 1).
        value_clip: clip of each value update around the rollout-time value (null: unclipped).
        epochs: passes of PPO over each rollout batch.
        minibatch_size: episodes per update (the batch is shuffled into minibatches each epoch).
        whiten_advantages: normalise advantages to zero mean, unit std over the batch's generated tokens.
        mask_truncated_turns: take no policy loss on a turn cut off by `max_new_tokens` (as DAPO's
            overlong filtering); its tokens, sampled far off the policy's usual path, otherwise
            dominate a small model's gradient and can wreck it within a few updates.
    """

    gamma: float = 1.0
    lam: float = 0.95
    clip_eps: float = 0.2
    value_clip: float | None = 0.2
    epochs: int = 2
    minibatch_size: int = 4
    whiten_advantages: bool = True
    mask_truncated_turns: bool = True

    def __post_init__(self) -> None:
        _check(0.0 <= self.gamma <= 1.0, "ppo.gamma", "in [0, 1]", self.gamma)
        _check(0.0 <= self.lam <= 1.0, "ppo.lam", "in [0, 1]", self.lam)
        _check(0.0 <= self.clip_eps < 1.0, "ppo.clip_eps", "in [0, 1)", self.clip_eps)
        _check(
            self.value_clip is None or self.value_clip >= 0, "ppo.value_clip", ">= 0 or null", self.value_clip
        )
        _check(self.epochs >= 1, "ppo.epochs", ">= 1", self.epochs)
        _check(self.minibatch_size >= 1, "ppo.minibatch_size", ">= 1", self.minibatch_size)


@dataclass
class OptimArgs:
    """The two AdamW optimisers, one per model (`model.init_args.optim`).

    Args:
        actor_lr: the actor's learning rate under PPO (and while cloning, unless `phases.clone_lr`).
        critic_lr: the value critic's learning rate.
        weight_decay: AdamW weight decay of both models.
        max_grad_norm: clip each model's gradient to this norm (0: no clipping).
    """

    actor_lr: float = 1e-4
    critic_lr: float = 3e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        _check(self.actor_lr > 0, "optim.actor_lr", "> 0", self.actor_lr)
        _check(self.critic_lr > 0, "optim.critic_lr", "> 0", self.critic_lr)
        _check(self.weight_decay >= 0, "optim.weight_decay", ">= 0", self.weight_decay)
        _check(self.max_grad_norm >= 0, "optim.max_grad_norm", ">= 0", self.max_grad_norm)


class Phase(str, enum.Enum):
    """What a training step does: clone the demonstrator, warm the critic up, or run PPO."""

    CLONE = "clone"
    CRITIC_WARMUP = "critic_warmup"
    PPO = "ppo"


@dataclass
class PhaseArgs:
    """The phases before PPO, counted in rollout batches (`model.init_args.phases`).

    Args:
        clone_steps: behaviour-cloning steps first: the actor learns the log-likelihood of
            `model.init_args.demonstrator`'s episodes (needs a demonstrator), the critic their returns.
        clone_lr: the actor's learning rate while cloning (null: `optim.actor_lr`).
        critic_warmup_steps: then steps that fit only the critic, on the actor's own episodes, so
            PPO's first advantages come from values of the policy being trained (no effect
            without a critic).
    """

    clone_steps: int = 0
    clone_lr: float | None = None
    critic_warmup_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.clone_steps >= 0, "phases.clone_steps", ">= 0", self.clone_steps)
        _check(self.clone_lr is None or self.clone_lr > 0, "phases.clone_lr", "> 0 or null", self.clone_lr)
        _check(self.critic_warmup_steps >= 0, "phases.critic_warmup_steps", ">= 0", self.critic_warmup_steps)

    def phase(self, step: int, has_critic: bool) -> Phase:
        """The phase of training step `step` (0-based: Lightning's `global_step` when it runs)."""
        if step < self.clone_steps:
            return Phase.CLONE
        if has_critic and step < self.clone_steps + self.critic_warmup_steps:
            return Phase.CRITIC_WARMUP
        return Phase.PPO


def as_args(cls: type, value: Any, key: str) -> Any:
    """`value` as a `cls` instance: None gives the defaults, a mapping (a checkpoint's hparams, a
    Python caller's dict) is unpacked; anything else is refused naming `key`."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"{KEY}.{key} has no option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**value)
    raise TypeError(f"{KEY}.{key} must be a mapping of {cls.__name__} options, got {type(value).__name__}")
