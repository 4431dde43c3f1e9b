"""Turn-level GAE, turn -> token broadcasting and group baselines (GRPO, RLOO).

Each vectorised function has a plain Python-loop ``*_reference`` twin in float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from lightning_asym.rl.stats import (
    _as_bool,
    _check_bootstrap,
    _check_shapes,
    _check_unit_interval,
    _f64,
    _float_dtype,
    _floats,
    _rows,
    _turn_mask,
)

GroupMode = Literal["grpo", "rloo"]


# ---------------------------------------------------------------- returns and GAE


def _reverse_discounted_sum(x: Tensor, factor: float) -> Tensor:
    """``y[..., t] = sum_{j >= t} factor**(j - t) * x[..., j]`` over the last dim, in closed form.

    Built as a broadcast product with an upper-triangular weight matrix rather than a
    matmul, so TF32 matmul settings (common in LLM training) cannot degrade precision.
    Costs O(B * T^2), fine for turn counts.
    """
    T = x.shape[-1]
    idx = torch.arange(T, device=x.device)
    offset = idx[None, :] - idx[:, None]  # [t, j] = j - t
    # 0.0 ** 0 == 1, so factor 0 (gamma=0 or lam=0) keeps the diagonal.
    weights = torch.where(
        offset >= 0,
        torch.pow(factor, offset.clamp(min=0).to(x.dtype)),
        torch.zeros((), dtype=x.dtype, device=x.device),
    )
    return (x.unsqueeze(-2) * weights).sum(-1)


def turn_gae(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    bootstrap: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation over turns, with explicit episode lengths.

    Shapes: ``rewards [B, T]`` (reward of each turn, any turn may be non-zero),
    ``values [B, T]`` (critic value of each turn's state), ``mask [B, T]`` (1 for the
    episode's turns, then 0 for padding), ``bootstrap [B]`` (value after the last real
    turn of a truncated episode; 0 or None for terminated ones)
    -> ``(advantages [B, T], returns [B, T])`` with ``returns = advantages + values``,
    both 0 on padding. The episode ends where the mask says, never where a reward is.
    """
    fn = "turn_gae"
    _check_shapes(fn, 2, rewards=rewards, values=values, mask=mask)
    _check_bootstrap(fn, bootstrap, rewards)
    _check_unit_interval(fn, gamma=gamma, lam=lam)
    m = _turn_mask(fn, mask)
    dtype = _float_dtype(rewards, values) if bootstrap is None else _float_dtype(rewards, values, bootstrap)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)
    r = rewards.to(dtype)
    v = torch.where(m, values.to(dtype), zero)

    next_m = torch.zeros_like(m)
    next_m[:, :-1] = m[:, 1:]
    next_v = torch.zeros_like(v)
    next_v[:, :-1] = v[:, 1:]
    if bootstrap is not None:
        is_last = m & ~next_m
        next_v = torch.where(is_last, bootstrap.to(dtype).unsqueeze(-1), next_v)

    delta = torch.where(m, r + gamma * next_v - v, zero)
    advantages = torch.where(m, _reverse_discounted_sum(delta, gamma * lam), zero)
    return advantages, advantages + v


def turn_gae_reference(
    rewards: Tensor,
    values: Tensor,
    mask: Tensor,
    bootstrap: Tensor | None = None,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[Tensor, Tensor]:
    """Loop reference for `turn_gae` (float64), the textbook backward recursion."""
    fn = "turn_gae_reference"
    _check_shapes(fn, 2, rewards=rewards, values=values, mask=mask)
    _check_bootstrap(fn, bootstrap, rewards)
    _turn_mask(fn, mask)
    r, v, m = _floats(rewards), _floats(values), _rows(mask)
    boot = _floats(bootstrap) if bootstrap is not None else [0.0] * len(r)
    adv = [[0.0] * len(row) for row in r]
    ret = [[0.0] * len(row) for row in r]
    for b in range(len(r)):
        n = sum(m[b])
        running = 0.0
        for t in reversed(range(n)):
            next_value = v[b][t + 1] if t + 1 < n else boot[b]
            delta = r[b][t] + gamma * next_value - v[b][t]
            running = delta + gamma * lam * running
            adv[b][t] = running
            ret[b][t] = running + v[b][t]
    return _f64(adv), _f64(ret)


# ------------------------------------------------------------------ turns -> tokens


def _check_turn_index(fn: str, turn_values: Tensor, turn_index: Tensor, token_mask: Tensor | None) -> None:
    if turn_values.dim() != 2:
        raise ValueError(f"{fn}: `turn_values` must be [B, T], got shape {tuple(turn_values.shape)}")
    if turn_index.dim() != 2 or turn_index.shape[0] != turn_values.shape[0]:
        raise ValueError(
            f"{fn}: `turn_index` must be [B, L] with B = {turn_values.shape[0]}, got {tuple(turn_index.shape)}"
        )
    if turn_index.dtype.is_floating_point or turn_index.dtype == torch.bool:
        raise ValueError(f"{fn}: `turn_index` must be an integer tensor, got {turn_index.dtype}")
    if token_mask is not None:
        _check_shapes(fn, turn_index=turn_index, token_mask=token_mask)
    if turn_index.numel():
        lo, hi = int(turn_index.min()), int(turn_index.max())
        if lo < -1 or hi >= turn_values.shape[1]:
            raise ValueError(
                f"{fn}: `turn_index` must lie in [-1, T-1] = [-1, {turn_values.shape[1] - 1}], "
                f"got values in [{lo}, {hi}]"
            )


def broadcast_turns_to_tokens(
    turn_values: Tensor, turn_index: Tensor, token_mask: Tensor | None = None, fill: float = 0.0
) -> Tensor:
    """Give each token the value of the turn it belongs to (e.g. its turn's advantage).

    Shapes: ``turn_values [B, T]``, ``turn_index [B, L]`` (integer index of each token's
    turn, -1 for tokens outside any turn), ``token_mask [B, L]`` (optional, 0 for tokens
    to ignore) -> ``[B, L]``, ``fill`` where the index is -1 or the token is masked.
    """
    fn = "broadcast_turns_to_tokens"
    _check_turn_index(fn, turn_values, turn_index, token_mask)
    valid = turn_index >= 0
    if token_mask is not None:
        valid = valid & _as_bool(token_mask)
    gathered = turn_values.gather(1, turn_index.clamp(min=0).long())
    return torch.where(valid, gathered, torch.full((), fill, dtype=turn_values.dtype, device=gathered.device))


def broadcast_turns_to_tokens_reference(
    turn_values: Tensor, turn_index: Tensor, token_mask: Tensor | None = None, fill: float = 0.0
) -> Tensor:
    """Loop reference for `broadcast_turns_to_tokens` (float64)."""
    _check_turn_index("broadcast_turns_to_tokens_reference", turn_values, turn_index, token_mask)
    v, idx = _floats(turn_values), turn_index.tolist()
    m = _rows(token_mask) if token_mask is not None else [[True] * len(row) for row in idx]
    out = [[fill] * len(row) for row in idx]
    for b, row in enumerate(idx):
        for i, t in enumerate(row):
            if t >= 0 and m[b][i]:
                out[b][i] = v[b][t]
    return _f64(out)


# ------------------------------------------------------------------ group baselines


def _check_groups(fn: str, rewards: Tensor, group_ids: Tensor, mode: str) -> None:
    if rewards.dim() != 1 or group_ids.shape != rewards.shape:
        raise ValueError(
            f"{fn}: `rewards` and `group_ids` must both be [N], got {tuple(rewards.shape)} "
            f"and {tuple(group_ids.shape)}"
        )
    if mode not in ("grpo", "rloo"):
        raise ValueError(f"{fn}: `mode` must be 'grpo' or 'rloo', got {mode!r}")


def group_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    mode: GroupMode = "grpo",
    normalize_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Critic-free advantages from a group of rollouts of the same task.

    Shapes: ``rewards [N]`` (one scalar per episode), ``group_ids [N]`` (any integer id,
    equal for episodes of the same task; groups need not be contiguous) -> ``[N]``.
    ``"grpo"``: ``r - mean(group)``; ``"rloo"``: ``r - mean(others in group)``. With
    ``normalize_std`` the result is divided by ``std(group) + eps`` (unbiased std; GRPO's
    default, RLOO's paper uses ``False``). Groups of size 1 have no baseline: advantage 0.
    """
    _check_groups("group_advantages", rewards, group_ids, mode)
    dtype = _float_dtype(rewards)
    r = rewards.to(dtype)
    _, inverse = torch.unique(group_ids, return_inverse=True)
    n_groups = int(inverse.max()) + 1 if inverse.numel() else 0
    counts = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(0, inverse, torch.ones_like(r))
    sums = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(0, inverse, r)
    n, group_sum = counts[inverse], sums[inverse]
    centred = r - group_sum / n
    if mode == "grpo":
        adv = centred
    else:
        adv = r - (group_sum - r) / (n - 1).clamp(min=1)
    if normalize_std:
        sq = torch.zeros(n_groups, dtype=dtype, device=r.device).index_add_(0, inverse, centred**2)
        std = (sq / (counts - 1).clamp(min=1)).sqrt()
        adv = adv / (std[inverse] + eps)
    return torch.where(n > 1, adv, torch.zeros((), dtype=dtype, device=r.device))


def group_advantages_reference(
    rewards: Tensor,
    group_ids: Tensor,
    mode: GroupMode = "grpo",
    normalize_std: bool = True,
    eps: float = 1e-6,
) -> Tensor:
    """Loop reference for `group_advantages` (float64)."""
    _check_groups("group_advantages_reference", rewards, group_ids, mode)
    r, ids = _floats(rewards), group_ids.tolist()
    out = []
    for i, (reward, gid) in enumerate(zip(r, ids)):
        group = [r[j] for j in range(len(r)) if ids[j] == gid]
        n = len(group)
        if n == 1:
            out.append(0.0)
            continue
        mean = sum(group) / n
        if mode == "grpo":
            adv = reward - mean
        else:
            others = [r[j] for j in range(len(r)) if ids[j] == gid and j != i]
            adv = reward - sum(others) / len(others)
        if normalize_std:
            adv /= math.sqrt(sum((g - mean) ** 2 for g in group) / (n - 1)) + eps
        out.append(adv)
    return _f64(out)
