"""Per-conversation KV caches and per-row sampling for `TransformersBackend`.

A conversation's cache is a list, one entry per layer, of `(keys, values)` tensors shaped
`[heads, length, head_dim]` holding only real positions. Each call stacks the caches of its
rows with left padding into one `DynamicCache`; padding in the middle of a row (between its
cached past and its new tokens) is harmless because every forward gets an explicit
attention mask and `position_ids = cumsum(mask) - 1`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from lightning_asym.backends.base import SamplingParams

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer `(keys, values)`, each `[heads, length, head_dim]`."""


@dataclass
class ConversationState:
    """What the model has seen of one conversation (one key).

    `ids` are all tokens so far (prompt and completion tokens of every call), `text` the
    string they render (the chat template's output plus decoded completions, special tokens
    kept), `kv` the cache of `ids[:kv_len]`: the last sampled token of a call is not fed to
    the model until the next call.
    """

    ids: list[int] = field(default_factory=list)
    text: str = ""
    kv: LayerKV | None = None
    calls: int = 0

    @property
    def kv_len(self) -> int:
        return 0 if not self.kv else int(self.kv[0][0].shape[-2])


def crop(kv: LayerKV, n: int) -> LayerKV:
    """The cache without its last `n` positions."""
    return [(k[:, : k.shape[1] - n], v[:, : v.shape[1] - n]) for k, v in kv]


def stack_past(pasts: Sequence[LayerKV | None]) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, int]:
    """Left-pad per-row caches into batched `[B, heads, P, head_dim]` tensors; returns them and P."""
    lengths = [0 if not p else int(p[0][0].shape[1]) for p in pasts]
    width = max(lengths, default=0)
    if width == 0:
        return None, 0
    ref = next(p for p in pasts if p)
    out = []
    for layer, (k0, v0) in enumerate(ref):
        k = k0.new_zeros((len(pasts), k0.shape[0], width, k0.shape[2]))
        v = v0.new_zeros((len(pasts), v0.shape[0], width, v0.shape[2]))
        for i, p in enumerate(pasts):
            if lengths[i]:
                k[i, :, width - lengths[i] :] = p[layer][0]  # type: ignore[index]
                v[i, :, width - lengths[i] :] = p[layer][1]  # type: ignore[index]
        out.append((k, v))
    return out, width


def extract_row(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], row: int, mask: torch.Tensor) -> LayerKV:
    """The real (unmasked) positions of one row of a batched cache, as a per-conversation cache."""
    keep = mask.bool()
    return [(k[row][:, keep].clone(), v[row][:, keep].clone()) for k, v in layers]


def seeded_generator(seed: int, call: int, device: torch.device) -> torch.Generator:
    """A generator for one conversation's `call`-th completion, independent of its batch neighbours."""
    g = torch.Generator(device=device)
    g.manual_seed((int(seed) * 1_000_003 + int(call) * 7_919 + 12_345) % (2**63 - 1))
    return g


def sample_next(
    logits: torch.Tensor, sampling: SamplingParams, generators: Sequence[torch.Generator]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick one token per row of `logits` `[B, V]`; returns `(tokens, logprobs)`.

    Log-probs are those of the raw logits (temperature 1, no filtering), i.e. the policy's.
    Greedy when `sampling.temperature == 0`; otherwise temperature, top-k, top-p, then one
    multinomial draw per row with that row's own generator.
    """
    logits = logits.float()
    logp = torch.log_softmax(logits, dim=-1)
    if sampling.greedy:
        tokens = logits.argmax(dim=-1)
    else:
        scores = logits / sampling.temperature
        if sampling.top_k and sampling.top_k < scores.shape[-1]:
            kth = torch.topk(scores, sampling.top_k, dim=-1).values[:, -1:]
            scores = scores.masked_fill(scores < kth, float("-inf"))
        if sampling.top_p < 1.0:
            sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
            cum = torch.softmax(sorted_scores, dim=-1).cumsum(dim=-1)
            # Drop a token once the mass before it already reaches top_p; the first one always stays.
            drop_sorted = (cum - torch.softmax(sorted_scores, dim=-1)) >= sampling.top_p
            drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
            scores = scores.masked_fill(drop, float("-inf"))
        probs = torch.softmax(scores, dim=-1)
        tokens = torch.stack(
            [torch.multinomial(probs[i], 1, generator=generators[i])[0] for i in range(probs.shape[0])]
        )
    return tokens, logp.gather(-1, tokens[:, None])[:, 0]
