"""Pure tensor functions for turn-level actor-critic RL: returns, GAE, PPO losses, baselines.

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

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "broadcast_turns_to_tokens",
    "broadcast_turns_to_tokens_reference",
    "clipped_value_loss",
    "clipped_value_loss_reference",
    "discounted_returns",
    "discounted_returns_reference",
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
    "ppo_policy_loss",
    "ppo_policy_loss_reference",
    "turn_gae",
    "turn_gae_reference",
]

KLKind = Literal["k1", "k2", "k3"]
Reduction = Literal["token", "sequence"]
GroupMode = Literal["grpo", "rloo"]


# --------------------------------------------------------------------------- checks


def _check_shapes(fn: str, ndim: int | None = None, **tensors: Tensor) -> None:
    """Raise a ValueError naming the arguments unless all tensors share one shape (of `ndim` dims)."""
    items = list(tensors.items())
    first_name, first = items[0]
    if ndim is not None and first.dim() != ndim:
        raise ValueError(f"{fn}: `{first_name}` must have {ndim} dims, got shape {tuple(first.shape)}")
    for name, t in items[1:]:
        if t.shape != first.shape:
            raise ValueError(
                f"{fn}: `{name}` has shape {tuple(t.shape)} but `{first_name}` has shape "
                f"{tuple(first.shape)}; they must match"
            )


def _check_unit_interval(fn: str, **scalars: float) -> None:
    for name, value in scalars.items():
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{fn}: `{name}` must be in [0, 1], got {value}")


def _as_bool(mask: Tensor) -> Tensor:
    # Masks may arrive as bool, int or float 0/1; any non-zero entry counts as valid.
    return mask if mask.dtype == torch.bool else mask != 0


def _turn_mask(fn: str, mask: Tensor) -> Tensor:
    """Bool turn mask, checked to be a prefix of ones per row (padding only after the episode)."""
    m = _as_bool(mask)
    if m.shape[-1] > 1 and bool((m[:, 1:] & ~m[:, :-1]).any()):
        raise ValueError(
            f"{fn}: `mask` must be 1 for the episode's turns then 0 for padding (no holes); "
            "a real turn follows a padded one"
        )
    return m


def _check_bootstrap(fn: str, bootstrap: Tensor | None, rewards: Tensor) -> None:
    if bootstrap is not None and bootstrap.shape != rewards.shape[:1]:
        raise ValueError(
            f"{fn}: `bootstrap` must have shape [B] = {tuple(rewards.shape[:1])}, got {tuple(bootstrap.shape)}"
        )


def _float_dtype(*tensors: Tensor) -> torch.dtype:
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype if dtype.is_floating_point else torch.get_default_dtype()


def _rows(mask: Tensor) -> list[list[bool]]:
    return _as_bool(mask).tolist()


def _floats(x: Tensor) -> list:
    return x.detach().double().tolist()


def _f64(x: list | float) -> Tensor:
    return torch.tensor(x, dtype=torch.float64)


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


def discounted_returns(
    rewards: Tensor, mask: Tensor, bootstrap: Tensor | None = None, gamma: float = 1.0
) -> Tensor:
    """Discounted return of each turn, ``G_t = r_t + gamma * G_{t+1}``.

    Shapes: ``rewards [B, T]``, ``mask [B, T]`` (1 for the episode's turns, then 0 for
    padding), ``bootstrap [B]`` (value after the last real turn of a truncated episode; 0
    or None for terminated ones) -> ``returns [B, T]``, 0 on padding.
    """
    fn = "discounted_returns"
    _check_shapes(fn, 2, rewards=rewards, mask=mask)
    _check_bootstrap(fn, bootstrap, rewards)
    _check_unit_interval(fn, gamma=gamma)
    m = _turn_mask(fn, mask)
    dtype = _float_dtype(rewards) if bootstrap is None else _float_dtype(rewards, bootstrap)
    zero = torch.zeros((), dtype=dtype, device=rewards.device)
    r = torch.where(m, rewards.to(dtype), zero)
    returns = _reverse_discounted_sum(r, gamma)
    if bootstrap is not None:
        # The bootstrap sits one step after the last real turn: weight gamma**(length - t).
        length = m.sum(-1, keepdim=True)
        steps = (length - torch.arange(m.shape[-1], device=m.device)).clamp(min=0).to(dtype)
        returns = returns + torch.pow(gamma, steps) * bootstrap.to(dtype).unsqueeze(-1)
    return torch.where(m, returns, zero)


def discounted_returns_reference(
    rewards: Tensor, mask: Tensor, bootstrap: Tensor | None = None, gamma: float = 1.0
) -> Tensor:
    """Loop reference for `discounted_returns` (float64)."""
    fn = "discounted_returns_reference"
    _check_shapes(fn, 2, rewards=rewards, mask=mask)
    _check_bootstrap(fn, bootstrap, rewards)
    _turn_mask(fn, mask)
    r, m = _floats(rewards), _rows(mask)
    boot = _floats(bootstrap) if bootstrap is not None else [0.0] * len(r)
    out = [[0.0] * len(row) for row in r]
    for b in range(len(r)):
        n = sum(m[b])
        running = boot[b]
        for t in reversed(range(n)):
            running = r[b][t] + gamma * running
            out[b][t] = running
    return _f64(out)


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


# ----------------------------------------------------------------- masked statistics


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` is non-zero; 0 where nothing is valid.

    Shapes: ``x [*S]``, ``mask [*S]`` -> scalar, or ``[*S]`` without ``dim`` if given.
    """
    _check_shapes("masked_mean", x=x, mask=mask)
    m = _as_bool(mask)
    total = torch.where(m, x, torch.zeros((), dtype=x.dtype, device=x.device))
    if dim is None:
        return total.sum() / m.sum().clamp(min=1)
    return total.sum(dim) / m.sum(dim).clamp(min=1)


def masked_mean_reference(x: Tensor, mask: Tensor) -> Tensor:
    """Loop reference for `masked_mean` over all entries (float64)."""
    _check_shapes("masked_mean_reference", x=x, mask=mask)
    vals = [a for a, keep in zip(_floats(x.flatten()), _as_bool(mask).flatten().tolist()) if keep]
    return _f64(sum(vals) / len(vals) if vals else 0.0)


def _masked_var(x: Tensor, mask: Tensor, unbiased: bool) -> tuple[Tensor, Tensor]:
    m = _as_bool(mask)
    mean = masked_mean(x, m)
    n = m.sum()
    sq = torch.where(m, (x - mean) ** 2, torch.zeros((), dtype=x.dtype, device=x.device)).sum()
    denom = (n - 1 if unbiased else n).clamp(min=1)
    return mean, sq / denom


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Normalise ``x`` to zero mean, unit (unbiased) std over the valid entries; 0 on padding.

    Shapes: ``x [*S]``, ``mask [*S]`` -> ``[*S]``. With ``shift_mean=False`` only the scale
    changes and the original mean is kept (as in TRL). Fewer than two valid entries leave
    the variance at 0, so the centred part is 0.
    """
    _check_shapes("masked_whiten", x=x, mask=mask)
    m = _as_bool(mask)
    mean, var = _masked_var(x, m, unbiased=True)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(m, whitened, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_whiten_reference(x: Tensor, mask: Tensor, shift_mean: bool = True, eps: float = 1e-8) -> Tensor:
    """Loop reference for `masked_whiten` (float64)."""
    _check_shapes("masked_whiten_reference", x=x, mask=mask)
    flat, keep = _floats(x.flatten()), _as_bool(mask).flatten().tolist()
    vals = [a for a, k in zip(flat, keep) if k]
    n = len(vals)
    mean = sum(vals) / n if n else 0.0
    var = sum((a - mean) ** 2 for a in vals) / max(n - 1, 1)
    out = []
    for a, k in zip(flat, keep):
        w = (a - mean) / math.sqrt(var + eps) + (0.0 if shift_mean else mean)
        out.append(w if k else 0.0)
    return _f64(out).reshape(x.shape)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """``1 - Var[returns - values] / Var[returns]`` over valid entries (a critic diagnostic).

    Shapes: ``values [*S]``, ``returns [*S]``, ``mask [*S]`` -> scalar; 1 is a perfect
    critic, 0 no better than the mean, NaN when the returns have no variance.
    """
    _check_shapes("explained_variance", values=values, returns=returns, mask=mask)
    m = _as_bool(mask)
    _, var_returns = _masked_var(returns, m, unbiased=False)
    _, var_residual = _masked_var(returns - values, m, unbiased=False)
    nan = torch.full((), math.nan, dtype=var_returns.dtype, device=var_returns.device)
    return torch.where(var_returns > 0, 1.0 - var_residual / var_returns, nan)


def explained_variance_reference(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """Loop reference for `explained_variance` (float64)."""
    _check_shapes("explained_variance_reference", values=values, returns=returns, mask=mask)
    keep = _as_bool(mask).flatten().tolist()
    pairs = [(v, r) for v, r, k in zip(_floats(values.flatten()), _floats(returns.flatten()), keep) if k]

    def var(xs: list[float]) -> float:
        mu = sum(xs) / len(xs)
        return sum((a - mu) ** 2 for a in xs) / len(xs)

    var_returns = var([r for _, r in pairs])
    var_residual = var([r - v for v, r in pairs])
    return _f64(1.0 - var_residual / var_returns if var_returns > 0 else math.nan)


# ------------------------------------------------------------------------ PPO losses


def _reduce(per_token: Tensor, mask: Tensor, reduction: str, fn: str) -> Tensor:
    if reduction == "token":
        return masked_mean(per_token, mask)
    if reduction == "sequence":
        # Mean within each row, then over the rows that have at least one valid token.
        per_row = masked_mean(per_token, mask, dim=-1)
        return masked_mean(per_row, mask.reshape(mask.shape[0], -1).any(-1))
    raise ValueError(f"{fn}: `reduction` must be 'token' or 'sequence', got {reduction!r}")


def _clip_bounds(fn: str, clip_eps: float, clip_eps_high: float | None) -> tuple[float, float]:
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if not 0.0 <= clip_eps < 1.0 or high < 0.0:
        raise ValueError(f"{fn}: need 0 <= clip_eps < 1 and clip_eps_high >= 0, got {clip_eps}, {high}")
    return 1.0 - clip_eps, 1.0 + high


def ppo_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    reduction: Reduction = "token",
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate loss on tokens, ``max(-A * r, -A * clip(r, 1 - lo, 1 + hi))``.

    Shapes: ``logprobs [B, L]`` (current policy, carries the gradient), ``old_logprobs
    [B, L]`` (policy that sampled the tokens), ``advantages [B, L]``, ``mask [B, L]`` ->
    ``(loss [], stats)``. ``clip_eps`` is the low clip, ``clip_eps_high`` the high one
    (defaults to ``clip_eps``; larger values give DAPO's "clip-higher"). ``reduction``:
    ``"token"`` averages over all valid tokens, ``"sequence"`` averages within each row
    first, then over rows. Stats (detached scalars over valid tokens): ``clip_fraction``
    (tokens whose gradient the clip removes), ``approx_kl`` (k3 estimate of
    KL(old || new)), ``ratio_mean``.
    """
    fn = "ppo_policy_loss"
    _check_shapes(fn, 2, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    low, high = _clip_bounds(fn, clip_eps, clip_eps_high)
    m = _as_bool(mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    # Zero the log-ratio on padding before exp so garbage there cannot overflow into NaN.
    log_ratio = torch.where(m, logprobs - old_logprobs, zero)
    adv = torch.where(m, advantages.to(logprobs.dtype), zero)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(low, high)
    loss = _reduce(torch.maximum(unclipped, clipped), m, reduction, fn)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean((clipped > unclipped).to(logprobs.dtype), m),
            "approx_kl": masked_mean(torch.expm1(log_ratio) - log_ratio, m),
            "ratio_mean": masked_mean(ratio, m),
        }
    return loss, stats


def ppo_policy_loss_reference(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    reduction: Reduction = "token",
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loop reference for `ppo_policy_loss` (float64, no gradient)."""
    fn = "ppo_policy_loss_reference"
    _check_shapes(fn, 2, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    low, high = _clip_bounds(fn, clip_eps, clip_eps_high)
    if reduction not in ("token", "sequence"):
        raise ValueError(f"{fn}: `reduction` must be 'token' or 'sequence', got {reduction!r}")
    lp, old, adv, m = _floats(logprobs), _floats(old_logprobs), _floats(advantages), _rows(mask)
    token_losses, row_means, clipped_flags, kls, ratios = [], [], [], [], []
    for b in range(len(lp)):
        row = []
        for i in range(len(lp[b])):
            if not m[b][i]:
                continue
            ratio = math.exp(lp[b][i] - old[b][i])
            unclipped = -adv[b][i] * ratio
            clipped = -adv[b][i] * min(max(ratio, low), high)
            row.append(max(unclipped, clipped))
            clipped_flags.append(1.0 if clipped > unclipped else 0.0)
            kls.append(ratio - 1.0 - math.log(ratio))
            ratios.append(ratio)
        token_losses.extend(row)
        if row:
            row_means.append(sum(row) / len(row))

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    loss = mean(token_losses) if reduction == "token" else mean(row_means)
    stats = {"clip_fraction": mean(clipped_flags), "approx_kl": mean(kls), "ratio_mean": mean(ratios)}
    return _f64(loss), {k: _f64(v) for k, v in stats.items()}


def clipped_value_loss(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_eps: float | None = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO value loss, ``0.5 * max((V - R)^2, (V_old + clip(V - V_old, -eps, eps) - R)^2)``.

    Shapes: ``values [*S]`` (current critic, carries the gradient), ``old_values [*S]``
    (critic at rollout time), ``returns [*S]`` (targets, e.g. `turn_gae`'s returns),
    ``mask [*S]`` -> ``(loss [], stats)``, a masked mean over valid entries.
    ``clip_eps=None`` gives the plain ``0.5 * MSE``. Stats: ``value_clip_fraction``
    (entries where the clipped error is the larger one).
    """
    fn = "clipped_value_loss"
    _check_shapes(fn, values=values, old_values=old_values, returns=returns, mask=mask)
    if clip_eps is not None and clip_eps < 0:
        raise ValueError(f"{fn}: `clip_eps` must be >= 0 or None, got {clip_eps}")
    m = _as_bool(mask)
    zero = torch.zeros((), dtype=values.dtype, device=values.device)
    v = torch.where(m, values, zero)
    ret = torch.where(m, returns.to(values.dtype), zero)
    unclipped = (v - ret) ** 2
    if clip_eps is None:
        per_entry, chose_clipped = unclipped, torch.zeros_like(m)
    else:
        old = torch.where(m, old_values.to(values.dtype), zero)
        clipped = (old + (v - old).clamp(-clip_eps, clip_eps) - ret) ** 2
        per_entry, chose_clipped = torch.maximum(unclipped, clipped), clipped > unclipped
    loss = 0.5 * masked_mean(per_entry, m)
    with torch.no_grad():
        stats = {"value_clip_fraction": masked_mean(chose_clipped.to(values.dtype), m)}
    return loss, stats


def clipped_value_loss_reference(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_eps: float | None = 0.2
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loop reference for `clipped_value_loss` (float64, no gradient)."""
    _check_shapes(
        "clipped_value_loss_reference", values=values, old_values=old_values, returns=returns, mask=mask
    )
    v, old, ret = _floats(values.flatten()), _floats(old_values.flatten()), _floats(returns.flatten())
    keep = _as_bool(mask).flatten().tolist()
    losses, flags = [], []
    for i, k in enumerate(keep):
        if not k:
            continue
        unclipped = (v[i] - ret[i]) ** 2
        if clip_eps is None:
            clipped = -math.inf
        else:
            clipped = (old[i] + min(max(v[i] - old[i], -clip_eps), clip_eps) - ret[i]) ** 2
        losses.append(max(unclipped, clipped))
        flags.append(1.0 if clipped > unclipped else 0.0)
    n = max(len(losses), 1)
    return _f64(0.5 * sum(losses) / n), {"value_clip_fraction": _f64(sum(flags) / n)}


# --------------------------------------------------------------------- KL and entropy


def kl_penalty(
    logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None = None, kind: KLKind = "k3"
) -> Tensor:
    """Per-token estimate of KL(policy || reference) from tokens sampled by the policy.

    With ``x = logprobs - ref_logprobs``: ``k1 = x`` (unbiased, can be negative),
    ``k2 = x^2 / 2`` (biased, low variance), ``k3 = exp(-x) - 1 + x`` (unbiased, >= 0).
    Shapes: ``logprobs [*S]``, ``ref_logprobs [*S]``, ``mask [*S]`` (optional) -> ``[*S]``,
    0 where masked. Reduce with `masked_mean`, or subtract from per-token rewards.
    """
    fn = "kl_penalty"
    _check_shapes(fn, logprobs=logprobs, ref_logprobs=ref_logprobs)
    if mask is not None:
        _check_shapes(fn, logprobs=logprobs, mask=mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    x = logprobs - ref_logprobs
    if mask is not None:
        x = torch.where(_as_bool(mask), x, zero)  # padding gives x = 0, hence 0 for every kind
    if kind == "k1":
        return x
    if kind == "k2":
        return 0.5 * x**2
    if kind == "k3":
        return torch.expm1(-x) + x
    raise ValueError(f"{fn}: `kind` must be 'k1', 'k2' or 'k3', got {kind!r}")


def kl_penalty_reference(
    logprobs: Tensor, ref_logprobs: Tensor, mask: Tensor | None = None, kind: KLKind = "k3"
) -> Tensor:
    """Loop reference for `kl_penalty` (float64)."""
    _check_shapes("kl_penalty_reference", logprobs=logprobs, ref_logprobs=ref_logprobs)
    lp, ref = _floats(logprobs.flatten()), _floats(ref_logprobs.flatten())
    keep = _as_bool(mask).flatten().tolist() if mask is not None else [True] * len(lp)
    estimators = {"k1": lambda x: x, "k2": lambda x: 0.5 * x * x, "k3": lambda x: math.exp(-x) - 1.0 + x}
    if kind not in estimators:
        raise ValueError(f"kl_penalty_reference: `kind` must be 'k1', 'k2' or 'k3', got {kind!r}")
    out = [estimators[kind](a - r) if k else 0.0 for a, r, k in zip(lp, ref, keep)]
    return _f64(out).reshape(logprobs.shape)


def entropy_from_logits(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Entropy of the categorical distribution at each position, ``-sum_v p_v log p_v``.

    Shapes: ``logits [*S, V]``, ``mask [*S]`` (optional) -> ``[*S]``, 0 where masked.
    Half-precision logits are upcast to float32; ``-inf`` logits (banned tokens) are fine.
    """
    fn = "entropy_from_logits"
    if logits.dim() < 1:
        raise ValueError(f"{fn}: `logits` must be [*S, V], got a scalar")
    if mask is not None and mask.shape != logits.shape[:-1]:
        raise ValueError(
            f"{fn}: `mask` must have shape {tuple(logits.shape[:-1])} (logits without the vocab dim), "
            f"got {tuple(mask.shape)}"
        )
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    # p * log p -> 0 as p -> 0; written out so -inf logits give 0, not 0 * -inf = NaN.
    plogp = torch.where(logp > -math.inf, logp.exp() * logp, zero)
    entropy = -plogp.sum(-1)
    if mask is not None:
        entropy = torch.where(_as_bool(mask), entropy, zero)
    return entropy


def entropy_from_logits_reference(logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Loop reference for `entropy_from_logits` (float64)."""
    V = logits.shape[-1]
    rows = _floats(logits.reshape(-1, V))
    keep = _as_bool(mask).flatten().tolist() if mask is not None else [True] * len(rows)
    out = []
    for row, k in zip(rows, keep):
        if not k:
            out.append(0.0)
            continue
        top = max(row)
        z = sum(math.exp(a - top) for a in row)
        probs = [math.exp(a - top) / z for a in row]
        out.append(-sum(p * math.log(p) for p in probs if p > 0))
    return _f64(out).reshape(logits.shape[:-1])


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
