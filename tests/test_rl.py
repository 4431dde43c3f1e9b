"""Every RL formula in `lightning_asym.rl` against its loop reference, hand-computed cases and padding."""

from __future__ import annotations

import math

import pytest
import torch

from lightning_asym.rl import (
    broadcast_turns_to_tokens,
    broadcast_turns_to_tokens_reference,
    clipped_value_loss,
    clipped_value_loss_reference,
    discounted_returns,
    discounted_returns_reference,
    entropy_from_logits,
    entropy_from_logits_reference,
    explained_variance,
    explained_variance_reference,
    group_advantages,
    group_advantages_reference,
    kl_penalty,
    kl_penalty_reference,
    masked_mean,
    masked_mean_reference,
    masked_whiten,
    masked_whiten_reference,
    ppo_policy_loss,
    ppo_policy_loss_reference,
    turn_gae,
    turn_gae_reference,
)

F64 = torch.float64
TIGHT = {"rtol": 1e-10, "atol": 1e-10}

GAMMAS = [0.0, 0.5, 0.99, 1.0]
LAMBDAS = [0.0, 0.7, 0.95, 1.0]
# Episode lengths per batch row and the padded turn count T; includes length 1, length 0
# (an empty row) and rows that fill T exactly.
COMPOSITIONS = {
    "single_len1": ([1], 1),
    "single_len3": ([3], 3),
    "mixed": ([1, 4, 2], 5),
    "full_rows": ([5, 5], 5),
    "with_empty": ([0, 3, 1], 4),
    "ragged": ([6, 1, 3, 6, 2], 7),
}


def lengths_to_mask(lengths: list[int], T: int) -> torch.Tensor:
    return torch.arange(T)[None, :] < torch.tensor(lengths)[:, None]


def make_episodes(
    lengths: list[int], T: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sparse rewards (zero at some episode ends, non-zero at some middle turns), values, mask."""
    g = torch.Generator().manual_seed(seed)
    mask = lengths_to_mask(lengths, T)
    rewards = torch.randn(len(lengths), T, generator=g, dtype=F64)
    rewards = rewards * (torch.rand(len(lengths), T, generator=g) < 0.4)
    for b, n in enumerate(lengths):
        if n >= 2:
            rewards[b, 0] = 1.5  # an intermediate reward that must not end the episode
        if n >= 1:
            rewards[b, n - 1] = 0.0 if b % 2 == 0 else 2.0  # zero reward at some turn ends
    values = torch.randn(len(lengths), T, generator=g, dtype=F64)
    zero = torch.zeros((), dtype=F64)
    return torch.where(mask, rewards, zero), torch.where(mask, values, zero), mask


def with_garbage(x: torch.Tensor, mask: torch.Tensor, value: float = float("nan")) -> torch.Tensor:
    """Overwrite the padded entries of `x` (where `mask` is 0) with `value`."""
    m = mask.bool()
    while m.dim() < x.dim():
        m = m.unsqueeze(-1)
    return torch.where(m, x, torch.full_like(x, value))


# ------------------------------------------------------------------------ turn GAE


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("lam", LAMBDAS)
@pytest.mark.parametrize("composition", list(COMPOSITIONS))
@pytest.mark.parametrize("truncated", [False, True])
def test_turn_gae_matches_reference(gamma: float, lam: float, composition: str, truncated: bool) -> None:
    lengths, T = COMPOSITIONS[composition]
    rewards, values, mask = make_episodes(lengths, T)
    bootstrap = torch.linspace(-1.0, 2.0, len(lengths), dtype=F64) if truncated else None
    adv, ret = turn_gae(rewards, values, mask, bootstrap, gamma=gamma, lam=lam)
    ref_adv, ref_ret = turn_gae_reference(rewards, values, mask, bootstrap, gamma=gamma, lam=lam)
    torch.testing.assert_close(adv, ref_adv, **TIGHT)
    torch.testing.assert_close(ret, ref_ret, **TIGHT)
    torch.testing.assert_close(ret, torch.where(mask, adv + values, torch.zeros((), dtype=F64)), **TIGHT)


@pytest.mark.parametrize("gamma", GAMMAS)
@pytest.mark.parametrize("composition", list(COMPOSITIONS))
@pytest.mark.parametrize("truncated", [False, True])
def test_discounted_returns_matches_reference(gamma: float, composition: str, truncated: bool) -> None:
    lengths, T = COMPOSITIONS[composition]
    rewards, values, mask = make_episodes(lengths, T, seed=1)
    bootstrap = torch.linspace(0.5, -1.5, len(lengths), dtype=F64) if truncated else None
    out = discounted_returns(rewards, mask, bootstrap, gamma=gamma)
    torch.testing.assert_close(
        out, discounted_returns_reference(rewards, mask, bootstrap, gamma=gamma), **TIGHT
    )
    # GAE with lambda = 1 telescopes to the Monte Carlo return.
    _, gae_returns = turn_gae(rewards, values, mask, bootstrap, gamma=gamma, lam=1.0)
    torch.testing.assert_close(gae_returns, out, **TIGHT)


def test_turn_gae_lambda0_is_one_step_td_error() -> None:
    rewards, values, mask = make_episodes([1, 4, 2], 5, seed=2)
    adv, _ = turn_gae(rewards, values, mask, gamma=0.9, lam=0.0)
    next_v = torch.cat([values[:, 1:], torch.zeros(3, 1, dtype=F64)], dim=1)  # 0 after the last turn
    expected = torch.where(mask, rewards + 0.9 * next_v - values, torch.zeros((), dtype=F64))
    torch.testing.assert_close(adv, expected, **TIGHT)


def test_turn_gae_three_turns_reward_at_end() -> None:
    # gamma = lam = 1: every turn's advantage is the final reward minus its own value.
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.5, 0.9]])
    adv, ret = turn_gae(rewards, values, torch.ones(1, 3), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[0.8, 0.5, 0.1]]))
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 1.0]]))


def test_turn_gae_hand_computed_intermediate_reward_and_bootstrap() -> None:
    # Row 0: reward at turn 0 and none at its last turn (turn 1); terminated.
    # Row 1: one turn, truncated, bootstrapped with V = 2.
    rewards = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]], dtype=F64)
    values = torch.tensor([[0.4, 0.6, 0.0], [1.0, 0.0, 0.0]], dtype=F64)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    gamma, lam = 0.5, 0.5
    adv, ret = turn_gae(rewards, values, mask, torch.tensor([0.0, 2.0], dtype=F64), gamma=gamma, lam=lam)
    d01 = 0.0 + gamma * 0.0 - 0.6  # last turn of a terminated episode: no next value
    d00 = 1.0 + gamma * 0.6 - 0.4
    d10 = 0.5 + gamma * 2.0 - 1.0
    expected = torch.tensor([[d00 + gamma * lam * d01, d01, 0.0], [d10, 0.0, 0.0]], dtype=F64)
    torch.testing.assert_close(adv, expected, **TIGHT)
    torch.testing.assert_close(ret[0, :2], expected[0, :2] + values[0, :2], **TIGHT)
    assert ret[0, 2] == 0 and ret[1, 1:].eq(0).all()


def test_discounted_returns_hand_computed() -> None:
    rewards = torch.tensor([[1.0, 0.0, 2.0, 0.0]], dtype=F64)
    out = discounted_returns(rewards, torch.tensor([[1, 1, 1, 0]]), torch.tensor([4.0], dtype=F64), gamma=0.5)
    # G2 = 2 + 0.5 * 4 = 4; G1 = 0 + 0.5 * 4 = 2; G0 = 1 + 0.5 * 2 = 2
    torch.testing.assert_close(out, torch.tensor([[2.0, 2.0, 4.0, 0.0]], dtype=F64), **TIGHT)


def test_turn_gae_float32_and_reward_position_independence() -> None:
    rewards, values, mask = make_episodes([6, 1, 3], 6, seed=3)
    adv32, _ = turn_gae(rewards.float(), values.float(), mask, gamma=0.99, lam=0.95)
    ref, _ = turn_gae_reference(rewards, values, mask, gamma=0.99, lam=0.95)
    assert adv32.dtype == torch.float32
    torch.testing.assert_close(adv32.double(), ref, rtol=1e-5, atol=1e-5)
    # Moving the reward to a middle turn keeps the episode length: later turns stay non-zero.
    r = torch.zeros(1, 4)
    r[0, 1] = 1.0
    adv, _ = turn_gae(r, torch.zeros(1, 4), torch.ones(1, 4), gamma=1.0, lam=1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
    _, ret = turn_gae(r, torch.full((1, 4), 0.3), torch.ones(1, 4), gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, torch.tensor([[1.0, 1.0, 0.0, 0.0]]))


@pytest.mark.parametrize("garbage", [float("nan"), 1e30, -7.0])
def test_turn_gae_and_returns_ignore_padding(garbage: float) -> None:
    rewards, values, mask = make_episodes([1, 4, 0, 2], 5, seed=4)
    boot = torch.tensor([0.3, 0.0, 9.0, -1.0], dtype=F64)
    adv, ret = turn_gae(rewards, values, mask, boot, gamma=0.9, lam=0.8)
    adv_g, ret_g = turn_gae(
        with_garbage(rewards, mask, garbage),
        with_garbage(values, mask, garbage),
        mask,
        boot,
        gamma=0.9,
        lam=0.8,
    )
    torch.testing.assert_close(adv_g, adv, **TIGHT)
    torch.testing.assert_close(ret_g, ret, **TIGHT)
    out = discounted_returns(rewards, mask, boot, gamma=0.9)
    torch.testing.assert_close(
        discounted_returns(with_garbage(rewards, mask, garbage), mask, boot, gamma=0.9), out, **TIGHT
    )


def test_turn_gae_errors() -> None:
    r, v, m = torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match="values"):
        turn_gae(r, torch.zeros(2, 4), m)
    with pytest.raises(ValueError, match="dims"):
        turn_gae(torch.zeros(3), torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="bootstrap"):
        turn_gae(r, v, m, bootstrap=torch.zeros(3))
    with pytest.raises(ValueError, match="no holes"):
        turn_gae(r, v, torch.tensor([[1, 0, 1], [1, 1, 1]]))
    with pytest.raises(ValueError, match="gamma"):
        turn_gae(r, v, m, gamma=1.5)
    with pytest.raises(ValueError, match="lam"):
        turn_gae(r, v, m, lam=-0.1)
    with pytest.raises(ValueError, match="mask"):
        discounted_returns(r, torch.ones(2, 2))
    with pytest.raises(ValueError, match="no holes"):
        discounted_returns_reference(r, torch.tensor([[0, 1, 1], [1, 1, 1]]))


# ----------------------------------------------------------------- turns -> tokens


def test_broadcast_turns_to_tokens() -> None:
    turn_adv = torch.tensor([[1.0, -2.0, 3.0], [0.5, 0.0, 0.0]], dtype=F64)
    # Prompt tokens (-1), then tokens of turn 0, an observation (-1), tokens of turn 1, padding.
    turn_index = torch.tensor([[-1, 0, 0, -1, 1, 1, 2], [-1, -1, 0, 0, 0, -1, -1]])
    token_mask = torch.tensor([[1, 1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 0, 0, 0]])
    out = broadcast_turns_to_tokens(turn_adv, turn_index, token_mask)
    expected = torch.tensor([[0, 1, 1, 0, -2, -2, 0], [0, 0, 0.5, 0.5, 0, 0, 0]], dtype=F64)
    torch.testing.assert_close(out, expected, **TIGHT)
    torch.testing.assert_close(
        out, broadcast_turns_to_tokens_reference(turn_adv, turn_index, token_mask), **TIGHT
    )
    no_mask = broadcast_turns_to_tokens(turn_adv, turn_index, fill=-9.0)
    torch.testing.assert_close(no_mask, broadcast_turns_to_tokens_reference(turn_adv, turn_index, fill=-9.0))
    assert no_mask[0, 6] == 3.0 and no_mask[0, 0] == -9.0


def test_broadcast_turns_to_tokens_random_matches_reference() -> None:
    g = torch.Generator().manual_seed(5)
    turn_values = torch.randn(4, 6, generator=g, dtype=F64)
    turn_index = torch.randint(-1, 6, (4, 20), generator=g)
    token_mask = torch.rand(4, 20, generator=g) < 0.8
    torch.testing.assert_close(
        broadcast_turns_to_tokens(turn_values, turn_index, token_mask),
        broadcast_turns_to_tokens_reference(turn_values, turn_index, token_mask),
        **TIGHT,
    )


def test_broadcast_turns_to_tokens_errors() -> None:
    v = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"\[-1, T-1\]"):
        broadcast_turns_to_tokens(v, torch.tensor([[0, 3], [0, 0]]))
    with pytest.raises(ValueError, match=r"\[-1, T-1\]"):
        broadcast_turns_to_tokens(v, torch.tensor([[0, -2], [0, 0]]))
    with pytest.raises(ValueError, match="B = 2"):
        broadcast_turns_to_tokens(v, torch.zeros(3, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        broadcast_turns_to_tokens(v, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="token_mask"):
        broadcast_turns_to_tokens(v, torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 5))


# ------------------------------------------------------------------------ PPO policy


def make_tokens(seed: int = 0, B: int = 4, L: int = 9) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(B, L, generator=g, dtype=F64) * 3
    logprobs = old + 0.4 * torch.randn(B, L, generator=g, dtype=F64)  # ratios on both sides of the clip
    advantages = torch.randn(B, L, generator=g, dtype=F64)
    mask = lengths_to_mask([9, 1, 0, 5][:B], L)
    return logprobs, old, advantages, mask


@pytest.mark.parametrize("clip", [(0.2, None), (0.1, 0.3), (0.0, 0.0), (0.2, 10.0)])
@pytest.mark.parametrize("reduction", ["token", "sequence"])
def test_ppo_policy_loss_matches_reference(clip: tuple[float, float | None], reduction: str) -> None:
    logprobs, old, adv, mask = make_tokens()
    loss, stats = ppo_policy_loss(logprobs, old, adv, mask, clip[0], clip[1], reduction=reduction)
    ref_loss, ref_stats = ppo_policy_loss_reference(
        logprobs, old, adv, mask, clip[0], clip[1], reduction=reduction
    )
    torch.testing.assert_close(loss, ref_loss, **TIGHT)
    for key in ("clip_fraction", "approx_kl", "ratio_mean"):
        torch.testing.assert_close(stats[key], ref_stats[key], **TIGHT)


def test_ppo_policy_loss_reductions_differ_only_in_weighting() -> None:
    logprobs, old, adv, mask = make_tokens()
    token, _ = ppo_policy_loss(logprobs, old, adv, mask, reduction="token")
    seq, _ = ppo_policy_loss(logprobs, old, adv, mask, reduction="sequence")
    assert not torch.isclose(token, seq)
    # With equal-length rows the two reductions agree.
    full = torch.ones_like(mask)
    a, _ = ppo_policy_loss(logprobs, old, adv, full, reduction="token")
    b, _ = ppo_policy_loss(logprobs, old, adv, full, reduction="sequence")
    torch.testing.assert_close(a, b, **TIGHT)


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


def test_ppo_asymmetric_clip() -> None:
    old = torch.zeros(1, 2, dtype=F64)
    logprobs = torch.tensor([[math.log(1.25), math.log(0.85)]], dtype=F64, requires_grad=True)
    adv = torch.tensor([[1.0, -1.0]], dtype=F64)
    # High clip 0.28 leaves ratio 1.25 unclipped; low clip 0.1 clips ratio 0.85 for A < 0.
    loss, stats = ppo_policy_loss(logprobs, old, adv, torch.ones(1, 2), clip_eps=0.1, clip_eps_high=0.28)
    loss.backward()
    assert logprobs.grad[0, 0] < 0 and logprobs.grad[0, 1] == 0
    torch.testing.assert_close(loss, torch.tensor((-1.25 + 0.9) / 2, dtype=F64), **TIGHT)
    assert stats["clip_fraction"] == 0.5


@pytest.mark.parametrize("garbage", [float("nan"), 1e4, -1e4])
def test_ppo_policy_loss_ignores_padding(garbage: float) -> None:
    logprobs, old, adv, mask = make_tokens(seed=6)
    lp = logprobs.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(lp, old, adv, mask, reduction="sequence")
    loss.backward()
    lp_g = with_garbage(logprobs, mask, garbage).requires_grad_(True)
    loss_g, stats_g = ppo_policy_loss(
        lp_g, with_garbage(old, mask, -garbage), with_garbage(adv, mask, garbage), mask, reduction="sequence"
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
    with pytest.raises(ValueError, match="reduction"):
        ppo_policy_loss(x, x, x, torch.ones(2, 3), reduction="batch")
    with pytest.raises(ValueError, match="clip_eps"):
        ppo_policy_loss(x, x, x, x, clip_eps=1.0)


def test_ppo_empty_mask_gives_zero_loss() -> None:
    logprobs, old, adv, _ = make_tokens()
    for reduction in ("token", "sequence"):
        loss, _ = ppo_policy_loss(logprobs, old, adv, torch.zeros(4, 9), reduction=reduction)
        assert loss == 0


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


# ------------------------------------------------------------------- group baselines

GROUPS = {
    "contiguous": [0, 0, 0, 0, 1, 1, 1, 1],
    "interleaved_with_singleton": [7, 3, 7, 3, 7, 42, 3, 3],
    "all_singletons": [0, 1, 2],
    "pairs_and_ties": [5, 5, 6, 6, 6],
}


@pytest.mark.parametrize("mode", ["grpo", "rloo"])
@pytest.mark.parametrize("normalize_std", [True, False])
@pytest.mark.parametrize("groups", list(GROUPS))
def test_group_advantages_matches_reference(mode: str, normalize_std: bool, groups: str) -> None:
    ids = torch.tensor(GROUPS[groups])
    g = torch.Generator().manual_seed(12)
    rewards = (torch.rand(len(ids), generator=g, dtype=F64) < 0.5).to(F64)  # binary success, with ties
    rewards[-1] = 0.25
    out = group_advantages(rewards, ids, mode, normalize_std)
    torch.testing.assert_close(out, group_advantages_reference(rewards, ids, mode, normalize_std), **TIGHT)


def test_group_advantages_hand_cases() -> None:
    rewards = torch.tensor([1.0, 0.0, 0.0, 3.0], dtype=F64)
    ids = torch.tensor([0, 0, 0, 1])
    rloo = group_advantages(rewards, ids, "rloo", normalize_std=False)
    torch.testing.assert_close(rloo, torch.tensor([1.0, -0.5, -0.5, 0.0], dtype=F64), **TIGHT)
    grpo = group_advantages(rewards, ids, "grpo", normalize_std=False)
    torch.testing.assert_close(grpo, torch.tensor([2 / 3, -1 / 3, -1 / 3, 0.0], dtype=F64), **TIGHT)
    std = math.sqrt(((2 / 3) ** 2 + 2 * (1 / 3) ** 2) / 2)
    grpo_std = group_advantages(rewards, ids, "grpo", normalize_std=True, eps=0.0)
    torch.testing.assert_close(grpo_std[:3], torch.tensor([2 / 3, -1 / 3, -1 / 3], dtype=F64) / std, **TIGHT)
    # A group where every rollout got the same reward carries no signal.
    assert group_advantages(torch.ones(4), torch.zeros(4, dtype=torch.long)).eq(0).all()


def test_group_advantages_errors() -> None:
    with pytest.raises(ValueError, match="mode"):
        group_advantages(torch.zeros(3), torch.zeros(3, dtype=torch.long), mode="ppo")
    with pytest.raises(ValueError, match=r"\[N\]"):
        group_advantages(torch.zeros(3), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[N\]"):
        group_advantages(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))


# ------------------------------------------------------------------ masked statistics


def test_masked_mean_whiten_explained_variance() -> None:
    g = torch.Generator().manual_seed(13)
    x = 5 + 3 * torch.randn(4, 6, generator=g, dtype=F64)
    y = torch.randn(4, 6, generator=g, dtype=F64)
    mask = lengths_to_mask([6, 1, 0, 3], 6)
    torch.testing.assert_close(masked_mean(x, mask), masked_mean_reference(x, mask), **TIGHT)
    per_row = masked_mean(x, mask, dim=-1)
    torch.testing.assert_close(per_row[:2], torch.stack([x[0].mean(), x[1, 0]]), **TIGHT)
    assert per_row[2] == 0
    for shift_mean in (True, False):
        out = masked_whiten(x, mask, shift_mean=shift_mean)
        torch.testing.assert_close(out, masked_whiten_reference(x, mask, shift_mean=shift_mean), **TIGHT)
        torch.testing.assert_close(
            masked_whiten(with_garbage(x, mask, float("nan")), mask, shift_mean=shift_mean), out, **TIGHT
        )
        assert out[~mask].eq(0).all()
    white = masked_whiten(x, mask)[mask]
    assert white.mean().abs() < 1e-12 and white.std().item() == pytest.approx(1.0, abs=1e-6)
    kept = masked_whiten(x, mask, shift_mean=False)[mask]
    assert kept.mean().item() == pytest.approx(x[mask].mean().item())
    torch.testing.assert_close(
        explained_variance(y, x, mask), explained_variance_reference(y, x, mask), **TIGHT
    )
    torch.testing.assert_close(
        explained_variance(with_garbage(y, mask), with_garbage(x, mask), mask), explained_variance(y, x, mask)
    )
    assert explained_variance(x, x, mask) == 1.0
    constant = torch.full_like(x, x[mask].mean().item())
    assert explained_variance(constant, x, mask).item() == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(explained_variance(y, torch.ones_like(x), mask).item())
    assert math.isnan(explained_variance_reference(y, torch.ones_like(x), mask).item())
    # Whitening one valid entry centres it instead of dividing by zero.
    single = lengths_to_mask([1], 3)
    assert masked_whiten(torch.tensor([[4.0, 1.0, 2.0]]), single).eq(0).all()


def test_masked_statistics_errors() -> None:
    with pytest.raises(ValueError, match="mask"):
        masked_mean(torch.zeros(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match="mask"):
        masked_whiten(torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="returns"):
        explained_variance(torch.zeros(2, 3), torch.zeros(2, 2), torch.ones(2, 3))
