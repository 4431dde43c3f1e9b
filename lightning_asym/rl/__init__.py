"""Pure tensor functions for turn-level actor-critic RL: GAE, PPO losses, baselines, statistics.

Credit is assigned per turn, not per token. The critic scores the state at the start of
each turn (``values [B, T]``), rewards arrive per turn (often only at the end of the
episode), and GAE runs over the turn axis::

    delta_t = r_t + gamma * V_{t+1} - V_t        (V after the last real turn = bootstrap, 0 if terminated)
    A_t     = sum_k (gamma * lam)^k * delta_{t+k}

Every token of a turn's completion then inherits that turn's advantage
(`broadcast_turns_to_tokens`), and PPO's clipped objective updates the actor's tokens.
Episode boundaries come from an explicit ``mask`` (1 for real turns, 0 for padding after
the episode ends), never from where rewards are non-zero. `group_advantages` gives the
critic-free baselines (GRPO, RLOO) for comparison.

Each vectorised function has a plain Python-loop ``*_reference`` twin that computes the
same thing in float64; tests hold one against the other. Padding never influences a
result: padded inputs are selected away with ``torch.where``, so even NaN there is safe.
"""

from lightning_asym.rl.advantages import GroupMode as GroupMode  # type alias, re-exported
from lightning_asym.rl.advantages import (
    broadcast_turns_to_tokens,
    broadcast_turns_to_tokens_reference,
    group_advantages,
    group_advantages_reference,
    turn_gae,
    turn_gae_reference,
)
from lightning_asym.rl.losses import KLKind as KLKind  # type alias, re-exported
from lightning_asym.rl.losses import (
    clipped_value_loss,
    clipped_value_loss_reference,
    entropy_from_logits,
    entropy_from_logits_reference,
    kl_penalty,
    kl_penalty_reference,
    ppo_policy_loss,
    ppo_policy_loss_reference,
)
from lightning_asym.rl.stats import (
    explained_variance,
    explained_variance_reference,
    masked_mean,
    masked_mean_reference,
    masked_whiten,
    masked_whiten_reference,
    nonempty_mean,
    nonempty_mean_reference,
)

__all__ = [
    "broadcast_turns_to_tokens",
    "broadcast_turns_to_tokens_reference",
    "clipped_value_loss",
    "clipped_value_loss_reference",
    "entropy_from_logits",
    "entropy_from_logits_reference",
    "explained_variance",
    "explained_variance_reference",
    "group_advantages",
    "group_advantages_reference",
    "kl_penalty",
    "kl_penalty_reference",
    "masked_mean",
    "masked_mean_reference",
    "masked_whiten",
    "masked_whiten_reference",
    "nonempty_mean",
    "nonempty_mean_reference",
    "ppo_policy_loss",
    "ppo_policy_loss_reference",
    "turn_gae",
    "turn_gae_reference",
]
