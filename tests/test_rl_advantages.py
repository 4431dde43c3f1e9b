"""`lightning_asym.rl` returns, turn GAE, turn -> token broadcast and group baselines against their loop references."""

from __future__ import annotations

import math

import pytest
import torch
from rl_helpers import F64, TIGHT, lengths_to_mask, with_garbage

from lightning_asym.rl import (
    broadcast_turns_to_tokens,
    broadcast_turns_to_tokens_reference,
    group_advantages,
    group_advantages_reference,
    turn_gae,
    turn_gae_reference,
)

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
def test_turn_gae_lambda1_returns_are_monte_carlo(gamma: float, composition: str, truncated: bool) -> None:
    lengths, T = COMPOSITIONS[composition]
    rewards, values, mask = make_episodes(lengths, T, seed=1)
    bootstrap = torch.linspace(0.5, -1.5, len(lengths), dtype=F64) if truncated else None
    # GAE with lambda = 1 telescopes to the discounted return G_t = r_t + gamma * G_{t+1}
    expected = torch.zeros_like(rewards)
    for b, n in enumerate(lengths):
        running = float(bootstrap[b]) if bootstrap is not None else 0.0
        for t in reversed(range(n)):
            running = float(rewards[b, t]) + gamma * running
            expected[b, t] = running
    _, gae_returns = turn_gae(rewards, values, mask, bootstrap, gamma=gamma, lam=1.0)
    torch.testing.assert_close(gae_returns, expected, **TIGHT)


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
def test_turn_gae_ignores_padding(garbage: float) -> None:
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
    with pytest.raises(ValueError, match="no holes"):
        turn_gae_reference(r, v, torch.tensor([[0, 1, 1], [1, 1, 1]]))


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
