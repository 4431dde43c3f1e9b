"""`length_groups`: rows of similar length encoded together, against a brute-force reference."""

from __future__ import annotations

import random

import pytest

from lightning_asym.backends.decoding import length_groups


def reference(lengths: list[int], max_waste: float) -> list[list[int]]:
    """The same greedy rule written as plainly as possible."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    groups: list[list[int]] = []
    for i in order:
        if groups:
            g = groups[-1]
            padded = (len(g) + 1) * lengths[g[0]]
            real = sum(lengths[j] for j in g) + lengths[i]
            if padded <= (1 + max_waste) * real:
                g.append(i)
                continue
        groups.append([i])
    return groups


@pytest.mark.parametrize("seed", range(20))
def test_matches_reference_and_bounds_padding(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(1, 40), rng.randint(100, 900)]) for _ in range(rng.randint(1, 40))]
    waste = rng.choice([0.0, 0.25, 1.0])
    groups = length_groups(lengths, waste)
    assert groups == reference(lengths, waste)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    for g in groups:
        longest = max(lengths[i] for i in g)
        assert lengths[g[0]] == longest
        assert len(g) * longest <= (1 + waste) * sum(lengths[i] for i in g) or len(g) == 1


def test_equal_lengths_are_one_group_and_infinite_waste_never_splits() -> None:
    assert length_groups([5, 5, 5]) == [[0, 1, 2]]
    assert length_groups([900, 3, 2, 1], float("inf")) == [[0, 1, 2, 3]]
    # 3 and 2 pad to 6 <= 1.25 x 5; adding 1 would pad to 9 > 1.25 x 6
    assert length_groups([900, 3, 2, 1], 0.25) == [[0], [1, 2], [3]]
    assert length_groups([]) == []
    with pytest.raises(ValueError, match="max_waste"):
        length_groups([1], -0.1)


def test_grouped_prefill_gives_the_tokens_of_one_padded_batch() -> None:
    """Rows of very different prompt lengths: grouped prefill feeds far fewer padded tokens and
    decodes the same greedy tokens with the same log-probs (float32) as one padded forward."""
    import torch

    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.backends.decoding import DecodeRow, decode_rows
    from lightning_asym.backends.hf import TransformersBackend

    torch.manual_seed(0)
    backend = TransformersBackend("tiny", tiny={"hidden_size": 32}, dtype="float32")
    rng = random.Random(0)
    prompts = [[rng.randint(5, 200) for _ in range(n)] for n in (180, 4, 9, 150, 6)]
    greedy = SamplingParams(max_new_tokens=6, temperature=0.0)

    def run(max_waste: float | None) -> tuple[list[DecodeRow], int]:
        fed = 0

        def forward(ids, mask, pos, cache):
            nonlocal fed
            fed += ids.numel()
            return backend._forward(ids, mask, pos, cache)

        rows = [DecodeRow(list(p), None, greedy.max_new_tokens, None) for p in prompts]
        with torch.no_grad():
            decode_rows(
                forward, rows, greedy, [], backend._pad_id, torch.device("cpu"), lambda ids: "", max_waste
            )
        return rows, fed

    padded, fed_padded = run(None)
    grouped, fed_grouped = run(0.25)
    assert [r.ids for r in grouped] == [r.ids for r in padded]
    for a, b in zip(grouped, padded):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
        assert a.kv is not None and b.kv is not None
        assert a.kv[0][0].shape == b.kv[0][0].shape
        assert torch.allclose(a.kv[0][0], b.kv[0][0], atol=1e-4)
    real = sum(map(len, prompts))
    assert fed_padded >= 5 * 180  # every row padded to the longest prompt
    assert fed_grouped < 1.3 * real + 2 * len(prompts) * greedy.max_new_tokens
