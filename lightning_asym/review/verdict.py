"""Where a critic's verdict is decided, in tokens: one definition for SFT, calibration and review.

A critic answers `format_verdict(verdict, feedback)` followed by its template's end of turn. The
answers `VERDICT: approve` and `VERDICT: revise` share their first tokens (`prefix`); the first
token where they differ decides the verdict. Feeding `prompt ids + prefix` and reading the
next-token logits at the last position gives the two verdict tokens' logits, and

    P(revise) = sigmoid(logit[revise_id] - logit[approve_id])

(the two-way softmax over the verdict tokens). `CriticSFT` validation, threshold calibration
and `GenerativeCritic`'s scored reviews all use `verdict_probe` and `revise_logit`, so a
threshold chosen offline means the same at runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from lightning_asym.errors import UserError
from lightning_asym.review.format import format_verdict
from lightning_asym.types import APPROVE, REVISE


@dataclass(frozen=True)
class VerdictProbe:
    """The answer tokens both verdicts share, and the first token of each where they differ."""

    prefix: list[int]
    approve_id: int
    revise_id: int


def answer_ids(tokenizer: Any, verdict: str, feedback: str, end_of_turn: str) -> list[int]:
    """The token ids of a critic's whole answer, as SFT trains on them (one string, no specials added)."""
    return list(
        tokenizer(format_verdict(verdict, feedback) + end_of_turn, add_special_tokens=False)["input_ids"]
    )


def verdict_probe(tokenizer: Any, end_of_turn: str) -> VerdictProbe:
    """The verdict position and tokens of this tokenizer and chat template's end of turn."""
    a = answer_ids(tokenizer, APPROVE, "", end_of_turn)
    r = answer_ids(tokenizer, REVISE, "", end_of_turn)
    k = next((i for i, (x, y) in enumerate(zip(a, r)) if x != y), min(len(a), len(r)))
    if k >= min(len(a), len(r)):
        raise UserError(
            "model.init_args.tokenizer: this tokenizer encodes the approve answer as a prefix of the "
            "revise answer (or the reverse), so the verdict cannot be scored; use another tokenizer"
        )
    return VerdictProbe(a[:k], a[k], r[k])


def revise_logit(logits: torch.Tensor, probe: VerdictProbe) -> torch.Tensor:
    """log P(revise) - log P(approve) (float32) from next-token logits `[..., vocab]` at the verdict position."""
    return logits[..., probe.revise_id].float() - logits[..., probe.approve_id].float()


def verdict_loss(revise_logit: torch.Tensor, revise: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of the verdicts: `revise_logit` is log P(revise) - log P(approve)
    at each example's verdict position, `revise` its label (1 revise, 0 approve); `CriticSFT`'s
    `verdict_weight` adds it to the token loss."""
    return torch.nn.functional.binary_cross_entropy_with_logits(revise_logit.float(), revise.float())
