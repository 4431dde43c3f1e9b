"""`lightning_asym.rl` PPO policy/value losses, KL penalties and entropy against their loop references."""

from __future__ import annotations

import math

import pytest
import torch
from rl_helpers import F64, TIGHT, lengths_to_mask, with_garbage

from lightning_asym.rl import (
    clipped_value_loss,
    clipped_value_loss_reference,
    entropy_from_logits,
    entropy_from_logits_reference,
    kl_penalty,
    kl_penalty_reference,
    ppo_policy_loss,
    ppo_policy_loss_reference,
)

# ------------------------------------------------------------------------ PPO policy


def make_tokens(seed: int = 0, B: int = 4, L: int = 9) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, L, generator=g, dtype=F64) * 3
    logprobs = old + 0.4 * torch.randn(B, L, generator=g, dtype=F64)  # ratios on both sides of the clip
    advantages = torch.randn(B, L, generator=g, dtype=F64)
    mask = lengths_to_mask([9, 1, 0, 5][:B], L)
    return logprobs, old, advantages, mask


@pytest.mark.parametrize("clip", [0.0, 0.1, 0.2, 0.5])
def test_ppo_policy_loss_matches_reference(clip: float) -> None:
    logprobs, old, adv, mask = make_tokens()
    loss, stats = ppo_policy_loss(logprobs, old, adv, mask, clip)
    ref_loss, ref_stats = ppo_policy_loss_reference(logprobs, old, adv, mask, clip)
    torch.testing.assert_close(loss, ref_loss, **TIGHT)
    for key in ("clip_fraction", "approx_kl", "ratio_mean"):
        torch.testing.assert_close(stats[key], ref_stats[key], **TIGHT)


def test_ppo_on_policy_gradient_is_policy_gradient() -> None:
    # At ratio 1, d loss / d logprob_i = -A_i / n_valid: positive advantages push log-probs up.
    _, old, adv, mask = make_tokens()
    logprobs = old.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(logprobs, old, adv, mask)
    loss.backward()
    n = mask.sum()
    torch.testing.assert_close(
        logprobs.grad, torch.where(mask, -adv / n, torch.zeros((), dtype=F64)), **TIGHT
    )
    torch.testing.assert_close(stats["approx_kl"], torch.zeros((), dtype=F64))
    torch.testing.assert_close(stats["ratio_mean"], torch.ones((), dtype=F64))
    assert stats["clip_fraction"] == 0


@pytest.mark.parametrize(
    ("log_ratio", "advantage", "clipped"),
    [
        (0.5, 1.0, True),  # ratio > 1 + eps, A > 0: no more incentive to raise it
        (-0.5, -1.0, True),  # ratio < 1 - eps, A < 0: no more incentive to lower it
        (0.5, -1.0, False),  # pessimistic bound keeps the gradient that pulls the ratio back
        (-0.5, 1.0, False),
        (0.1, 1.0, False),  # inside the clip range
    ],
)
def test_ppo_clipping_zeroes_gradient(log_ratio: float, advantage: float, clipped: bool) -> None:
    old = torch.tensor([[-1.0]], dtype=F64)
    logprobs = (old + log_ratio).requires_grad_(True)
    loss, stats = ppo_policy_loss(
        logprobs, old, torch.tensor([[advantage]], dtype=F64), torch.ones(1, 1), 0.2
    )
    loss.backward()
    grad = logprobs.grad.item()
    if clipped:
        assert grad == 0.0 and stats["clip_fraction"] == 1.0
    else:
        # Gradient of -A * ratio: its sign is opposite to the advantage's.
        assert grad == pytest.approx(-advantage * math.exp(log_ratio)) and stats["clip_fraction"] == 0.0


@pytest.mark.parametrize("garbage", [float("nan"), 1e4, -1e4])
def test_ppo_policy_loss_ignores_padding(garbage: float) -> None:
    logprobs, old, adv, mask = make_tokens(seed=6)
    lp = logprobs.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(lp, old, adv, mask)
    loss.backward()
    lp_g = with_garbage(logprobs, mask, garbage).requires_grad_(True)
    loss_g, stats_g = ppo_policy_loss(
        lp_g, with_garbage(old, mask, -garbage), with_garbage(adv, mask, garbage), mask
    )
    loss_g.backward()
    torch.testing.assert_close(loss_g, loss, **TIGHT)
    torch.testing.assert_close(lp_g.grad, lp.grad, **TIGHT)
    for key in stats:
        torch.testing.assert_close(stats_g[key], stats[key], **TIGHT)


def test_ppo_policy_loss_errors() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="old_logprobs"):
        ppo_policy_loss(x, torch.zeros(2, 4), x, x)
    with pytest.raises(ValueError, match="advantages"):
        ppo_policy_loss(x, x, torch.zeros(2), x)
    with pytest.raises(ValueError, match="dims"):
        ppo_policy_loss(torch.zeros(6), torch.zeros(6), torch.zeros(6), torch.ones(6))
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(x, x, x, x, clip_eps=1.0)


def test_ppo_empty_mask_gives_zero_loss() -> None:
    logprobs, old, adv, _ = make_tokens()
    loss, stats = ppo_policy_loss(logprobs, old, adv, torch.zeros(4, 9))
    assert loss == 0
    # the statistics of an empty minibatch read 0 (a ratio of 0!): nonempty_mean leaves them out
    assert stats["ratio_mean"] == 0


# ------------------------------------------------------------------------ value loss


@pytest.mark.parametrize("clip_eps", [None, 0.0, 0.1, 0.5])
def test_clipped_value_loss_matches_reference(clip_eps: float | None) -> None:
    g = torch.Generator().manual_seed(7)
    values, old, returns = (torch.randn(3, 5, generator=g, dtype=F64) for _ in range(3))
    mask = lengths_to_mask([5, 2, 1], 5)
    loss, stats = clipped_value_loss(values, old, returns, mask, clip_eps)
    ref_loss, ref_stats = clipped_value_loss_reference(values, old, returns, mask, clip_eps)
    torch.testing.assert_close(loss, ref_loss, **TIGHT)
    torch.testing.assert_close(stats["value_clip_fraction"], ref_stats["value_clip_fraction"], **TIGHT)
    if clip_eps is None:
        expected = 0.5 * ((values - returns) ** 2)[mask].mean()
        torch.testing.assert_close(loss, expected, **TIGHT)


def test_clipped_value_loss_hand_cases_and_gradient() -> None:
    old = torch.tensor([0.0, 0.0], dtype=F64)
    returns = torch.tensor([1.0, -1.0], dtype=F64)
    # Entry 0 moved past the clip towards its target: the clipped error (1 - 0.2)^2 is larger,
    # so it wins and the gradient vanishes. Entry 1 moved away from its target: unclipped wins.
    values = torch.tensor([0.5, 0.5], dtype=F64, requires_grad=True)
    loss, stats = clipped_value_loss(values, old, returns, torch.ones(2), clip_eps=0.2)
    loss.backward()
    torch.testing.assert_close(loss, torch.tensor(0.5 * (0.8**2 + 1.5**2) / 2, dtype=F64), **TIGHT)
    assert values.grad[0] == 0 and values.grad[1] > 0
    assert stats["value_clip_fraction"] == 0.5


@pytest.mark.parametrize("garbage", [float("nan"), 1e30])
def test_clipped_value_loss_ignores_padding(garbage: float) -> None:
    g = torch.Generator().manual_seed(8)
    values, old, returns = (torch.randn(2, 4, generator=g, dtype=F64) for _ in range(3))
    mask = lengths_to_mask([4, 1], 4)
    loss, stats = clipped_value_loss(values, old, returns, mask)
    loss_g, stats_g = clipped_value_loss(
        with_garbage(values, mask, garbage),
        with_garbage(old, mask, garbage),
        with_garbage(returns, mask, garbage),
        mask,
    )
    torch.testing.assert_close(loss_g, loss, **TIGHT)
    torch.testing.assert_close(stats_g["value_clip_fraction"], stats["value_clip_fraction"], **TIGHT)


def test_clipped_value_loss_errors() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="returns"):
        clipped_value_loss(x, x, torch.zeros(3, 2), x)
    with pytest.raises(ValueError, match="clip_eps"):
        clipped_value_loss(x, x, x, x, clip_eps=-0.1)


# ------------------------------------------------------------------- KL and entropy


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_kl_penalty_matches_reference_and_ignores_padding(kind: str) -> None:
    logprobs, ref, _, mask = make_tokens(seed=9)
    out = kl_penalty(logprobs, ref, mask, kind=kind)
    torch.testing.assert_close(out, kl_penalty_reference(logprobs, ref, mask, kind=kind), **TIGHT)
    torch.testing.assert_close(
        kl_penalty(logprobs, ref, kind=kind), kl_penalty_reference(logprobs, ref, kind=kind)
    )
    garbage = kl_penalty(
        with_garbage(logprobs, mask, float("nan")), with_garbage(ref, mask, 1e4), mask, kind=kind
    )
    torch.testing.assert_close(garbage, out, **TIGHT)
    assert kl_penalty(ref, ref, kind=kind).eq(0).all()
    if kind != "k1":
        assert (out >= 0).all()


def test_kl_estimators_agree_in_expectation() -> None:
    # Tokens sampled from p: mean k1 and mean k3 both estimate KL(p || q).
    g = torch.Generator().manual_seed(10)
    p = torch.softmax(torch.randn(6, generator=g, dtype=F64), -1)
    q = torch.softmax(torch.randn(6, generator=g, dtype=F64), -1)
    samples = torch.multinomial(p, 20000, replacement=True, generator=g)
    lp, lq = p.log()[samples], q.log()[samples]
    true_kl = (p * (p.log() - q.log())).sum()
    for kind in ("k1", "k3"):
        assert kl_penalty(lp, lq, kind=kind).mean() == pytest.approx(true_kl.item(), abs=0.03)


def test_kl_penalty_errors() -> None:
    with pytest.raises(ValueError, match="kind"):
        kl_penalty(torch.zeros(2), torch.zeros(2), kind="k4")
    with pytest.raises(ValueError, match="ref_logprobs"):
        kl_penalty(torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        kl_penalty(torch.zeros(2), torch.zeros(2), torch.ones(3))


def test_entropy_from_logits() -> None:
    g = torch.Generator().manual_seed(11)
    logits = 3 * torch.randn(3, 4, 7, generator=g, dtype=F64)
    mask = lengths_to_mask([4, 2, 0], 4)
    out = entropy_from_logits(logits, mask)
    torch.testing.assert_close(out, entropy_from_logits_reference(logits, mask), **TIGHT)
    torch.testing.assert_close(entropy_from_logits(logits), entropy_from_logits_reference(logits), **TIGHT)
    torch.testing.assert_close(
        entropy_from_logits(with_garbage(logits, mask, float("nan")), mask), out, **TIGHT
    )
    # Uniform over the allowed tokens; banned (-inf) tokens contribute nothing.
    uniform = torch.zeros(1, 7, dtype=F64)
    uniform[0, 3:] = -math.inf
    torch.testing.assert_close(entropy_from_logits(uniform), torch.tensor([math.log(3)], dtype=F64), **TIGHT)
    torch.testing.assert_close(entropy_from_logits(uniform), entropy_from_logits_reference(uniform), **TIGHT)
    assert entropy_from_logits(logits.to(torch.bfloat16)).dtype == torch.float32
    with pytest.raises(ValueError, match="vocab"):
        entropy_from_logits(logits, torch.ones(3, 4, 7))
