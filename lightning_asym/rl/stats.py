"""Masked statistics (mean, whitening, explained variance) and the checks shared by `lightning_asym.rl`.

Each vectorised function has a plain Python-loop ``*_reference`` twin in float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

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


def masked_whiten(
    x: Tensor, mask: Tensor, eps: float = 1e-8, sum_over: Callable[[Tensor], Tensor] | None = None
) -> Tensor:
    """Normalise ``x`` to zero mean, unit (unbiased) std over the valid entries; 0 on padding.

    Shapes: ``x [*S]``, ``mask [*S]`` -> ``[*S]``. Fewer than two valid entries leave the
    variance at 0, so the centred part is 0. ``sum_over`` (a sum over the processes that each
    hold a part of the batch, e.g. an all-reduce; called twice, by every process) makes the mean
    and std those of the whole batch, so each process whitens as one process would.
    """
    _check_shapes("masked_whiten", x=x, mask=mask)
    m = _as_bool(mask)
    if sum_over is None:
        mean, var = _masked_var(x, m, unbiased=True)
    else:
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        n, total = sum_over(torch.stack([m.sum().to(x.dtype), torch.where(m, x, zero).sum()]))
        mean = total / n.clamp(min=1)
        sq = sum_over(torch.where(m, (x - mean) ** 2, zero).sum())
        var = sq / (n - 1).clamp(min=1)
    whitened = (x - mean) * torch.rsqrt(var + eps)
    return torch.where(m, whitened, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_whiten_reference(x: Tensor, mask: Tensor, eps: float = 1e-8) -> Tensor:
    """Loop reference for `masked_whiten` (float64)."""
    _check_shapes("masked_whiten_reference", x=x, mask=mask)
    flat, keep = _floats(x.flatten()), _as_bool(mask).flatten().tolist()
    vals = [a for a, k in zip(flat, keep) if k]
    n = len(vals)
    mean = sum(vals) / n if n else 0.0
    var = sum((a - mean) ** 2 for a in vals) / max(n - 1, 1)
    out = [(a - mean) / math.sqrt(var + eps) if k else 0.0 for a, k in zip(flat, keep)]
    return _f64(out).reshape(x.shape)


def _check_counts(fn: str, values: Tensor, counts: Tensor) -> None:
    if values.dim() != 1 or counts.shape != values.shape:
        raise ValueError(
            f"{fn}: `values` and `counts` must both be [N], got {tuple(values.shape)} and {tuple(counts.shape)}"
        )


def nonempty_mean(values: Tensor, counts: Tensor) -> Tensor:
    """Mean of per-minibatch statistics over the minibatches that measured something.

    Shapes: ``values [N]`` (one statistic per minibatch, e.g. its ``ratio_mean``), ``counts [N]``
    (how many valid tokens or turns each one was taken over) -> scalar; NaN when every count is
    0. A minibatch with nothing valid reports 0 for any masked mean (a ratio of 0, where 1 is
    "unchanged"), so averaging it in would bias the statistic; it is left out instead.
    """
    _check_counts("nonempty_mean", values, counts)
    keep = counts > 0
    n = keep.sum()
    total = torch.where(keep, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum()
    nan = torch.full((), math.nan, dtype=total.dtype, device=total.device)
    return torch.where(n > 0, total / n.clamp(min=1), nan)


def nonempty_mean_reference(values: Tensor, counts: Tensor) -> Tensor:
    """Loop reference for `nonempty_mean` (float64)."""
    _check_counts("nonempty_mean_reference", values, counts)
    kept = [v for v, c in zip(_floats(values), counts.tolist()) if c > 0]
    return _f64(sum(kept) / len(kept) if kept else math.nan)


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
