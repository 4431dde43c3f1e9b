"""PPO policy and value losses, KL penalties and entropy on tokens.

Each vectorised function has a plain Python-loop ``*_reference`` twin in float64.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from lightning_asym.rl.stats import _as_bool, _check_shapes, _f64, _floats, _rows, masked_mean

KLKind = Literal["k1", "k2", "k3"]


# ------------------------------------------------------------------------ PPO losses


def _check_clip(fn: str, clip_eps: float) -> tuple[float, float]:
    if not 0.0 <= clip_eps < 1.0:
        raise ValueError(f"{fn}: need 0 <= clip_eps < 1, got {clip_eps}")
    return 1.0 - clip_eps, 1.0 + clip_eps


def ppo_policy_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_eps: float = 0.2,
) -> tuple[Tensor, dict[str, Tensor]]:
    """PPO clipped surrogate loss on tokens, ``max(-A * r, -A * clip(r, 1 - eps, 1 + eps))``.

    Shapes: ``logprobs [B, L]`` (current policy, carries the gradient), ``old_logprobs
    [B, L]`` (policy that sampled the tokens), ``advantages [B, L]``, ``mask [B, L]`` ->
    ``(loss [], stats)``, the loss averaged over all valid tokens. Stats (detached scalars
    over valid tokens, 0 when there are none: see `nonempty_mean`): ``clip_fraction``
    (tokens whose gradient the clip removes), ``approx_kl`` (k3 estimate of
    KL(old || new)), ``ratio_mean``.
    """
    fn = "ppo_policy_loss"
    _check_shapes(fn, 2, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    low, high = _check_clip(fn, clip_eps)
    m = _as_bool(mask)
    zero = torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    # Zero the log-ratio on padding before exp so garbage there cannot overflow into NaN.
    log_ratio = torch.where(m, logprobs - old_logprobs, zero)
    adv = torch.where(m, advantages.to(logprobs.dtype), zero)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(low, high)
    loss = masked_mean(torch.maximum(unclipped, clipped), m)
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
) -> tuple[Tensor, dict[str, Tensor]]:
    """Loop reference for `ppo_policy_loss` (float64, no gradient)."""
    fn = "ppo_policy_loss_reference"
    _check_shapes(fn, 2, logprobs=logprobs, old_logprobs=old_logprobs, advantages=advantages, mask=mask)
    low, high = _check_clip(fn, clip_eps)
    lp, old, adv, m = _floats(logprobs), _floats(old_logprobs), _floats(advantages), _rows(mask)
    token_losses, clipped_flags, kls, ratios = [], [], [], []
    for b in range(len(lp)):
        for i in range(len(lp[b])):
            if not m[b][i]:
                continue
            ratio = math.exp(lp[b][i] - old[b][i])
            unclipped = -adv[b][i] * ratio
            clipped = -adv[b][i] * min(max(ratio, low), high)
            token_losses.append(max(unclipped, clipped))
            clipped_flags.append(1.0 if clipped > unclipped else 0.0)
            kls.append(ratio - 1.0 - math.log(ratio))
            ratios.append(ratio)

    def mean(xs: list[float]) -> float:
        return sum(xs) / len(xs) if xs else 0.0

    loss = mean(token_losses)
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
