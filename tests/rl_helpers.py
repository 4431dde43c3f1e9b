"""Shared helpers of the rl tests: padding masks and garbage-filled padding."""

from __future__ import annotations

import torch

F64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}


def lengths_to_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def with_garbage(x: torch.Tensor, mask: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    """Overwrite the padded entries of `x` (where `mask` is 0) with `value`."""
    m = mask.bool()
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return torch.where(m, x, torch.full_like(x, value))
