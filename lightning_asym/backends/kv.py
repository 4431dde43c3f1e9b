"""Per-conversation KV caches and per-row sampling for `TransformersBackend`.

A conversation's cache is a list, one entry per layer, of `(keys, values)` tensors shaped
`[heads, length, head_dim]` holding only real positions. Each call stacks the caches of its
rows with left padding into one `DynamicCache`; padding in the middle of a row (between its
cached past and its new tokens) is harmless because every forward gets an explicit
attention mask and `position_ids = cumsum(mask) - 1`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

from lightning_asym.backends.base import SamplingParams
from lightning_asym.types import REVISION_PREFIX, Message

LayerKV = list[tuple[torch.Tensor, torch.Tensor]]
"""Per layer `(keys, values)`, each `[heads, length, head_dim]`."""


@dataclass
class ConversationState:
    """What the model has seen of one conversation (one key).

    `ids` are all tokens so far (prompt and completion tokens of every call), `text` the
    string they render (the chat template's output plus decoded completions, special tokens
    kept), `kv` the cache of `ids[:kv_len]`: the last sampled token of a call is not fed to
    the model until the next call. `marks` are the `(tokens, chars)` points where `ids[:tokens]`
    renders exactly `text[:chars]` (call boundaries), where the state may be cropped.

    `outs` are the completions of the current turn (`(ids, text)`, the rejected proposals and
    their revisions), so the one that went out keeps its sampled tokens at the next turn.
    `turn_from = (length, kept)`: at the turn's first call the state held `length` tokens and
    kept the first `kept`; a turn's record (`Completion.prefix_len`, `prompt_ids`) starts there.
    """

    ids: list[int] = field(default_factory=list)
    text: str = ""
    kv: LayerKV | None = None
    calls: int = 0
    marks: list[tuple[int, int]] = field(default_factory=lambda: [(0, 0)])
    outs: list[tuple[list[int], str]] = field(default_factory=list)
    turn_from: tuple[int, int] = (0, 0)

    @property
    def kv_len(self) -> int:
        return 0 if not self.kv else int(self.kv[0][0].shape[-2])

    def mark(self) -> None:
        if self.marks[-1] != (len(self.ids), len(self.text)):
            self.marks.append((len(self.ids), len(self.text)))

    def extend(self, ids: list[int], text: str) -> None:
        """Append tokens that render `text`, and mark the new boundary."""
        self.ids = self.ids + ids
        self.text = self.text + text
        self.mark()

    def rewind(self, text: str) -> int:
        """Crop to the longest marked prefix that `text` starts with; returns the tokens kept.

        The KV cache is cropped with it, so only the tokens after the crop are encoded again.
        Then, if `text` goes on with the text of one of this turn's completions (the proposal
        that went out after a revision), its sampled tokens are appended rather than re-encoded.
        """
        if text.startswith(self.text):
            return len(self.ids)
        common = len(os.path.commonprefix([self.text, text]))
        while self.marks[-1][1] > common:
            self.marks.pop()
        n, chars = self.marks[-1]
        self.ids, self.text = self.ids[:n], self.text[:chars]
        if self.kv is not None:
            self.kv = keep_first(self.kv, min(n, self.kv_len)) if n else None
        rest = text[chars:]
        match = max(
            (o for o in self.outs if o[1] and rest.startswith(o[1])), key=lambda o: len(o[1]), default=None
        )
        if match is not None:
            self.extend(list(match[0]), match[1])
        return n

    def align(self, text: str, revision: bool) -> tuple[int | None, int]:
        """Align with a call's prompt `text`; returns the call's record `(prefix_len, base)`.

        The state is cropped to the longest prefix it shares with `text` (`rewind`). A turn's
        record starts where the turn started: a revision (`is_revision`) continues the turn of the
        previous call, so its `prompt_ids` (`ids[base:]` plus the new tokens) run from that
        turn's start, its rejected proposal and the feedback included; any other call starts a
        turn. `prefix_len` is None when the turn's context extends all the (non-empty) state held
        before the turn, else how many of those tokens it kept: 0 for a conversation this backend
        starts afresh, so a trajectory replayed from a prefix recorded elsewhere is not taken for one
        sequence.
        """
        length = len(self.ids)
        kept = self.rewind(text)
        if not (revision and self.turn_from[1] <= kept):
            # a new turn: the last turn's completions were kept only to splice the one that went out
            self.turn_from, self.outs = (length, kept), []
        before, base = self.turn_from
        return (None if base == before > 0 else base), base


def is_revision(conversation: Sequence[Message]) -> bool:
    """Whether a call asks the actor to revise its last proposal (see `rollout.supervision`)."""
    last = conversation[-1] if conversation else None
    return last is not None and last.role == "user" and (last.content or "").startswith(REVISION_PREFIX)


def keep_first(kv: LayerKV, n: int) -> LayerKV:
    """The cache of the first `n` positions."""
    return [(k[:, :n], v[:, :n]) for k, v in kv]


def forward_kwargs(model: Any) -> tuple[str, dict[str, int]]:
    """How `model.forward` takes a KV cache (`cache` or `past_key_values`), and the extra keyword
    that keeps only the last position's logits (`{"logits_to_keep": 1}`, or none)."""
    params = inspect.signature(model.forward).parameters
    if "cache" in params or "past_key_values" in params:
        name = "cache" if "cache" in params else "past_key_values"
    else:  # **kwargs only: the name this transformers release uses
        import transformers

        name = "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"
    return name, ({"logits_to_keep": 1} if "logits_to_keep" in params else {})


def weights_version(model: Any) -> tuple[int, ...]:
    """The in-place version of every parameter: an optimizer step or `load_state_dict` changes it,
    and a KV cache computed with other weights is stale."""
    return tuple(p._version for p in model.parameters())


def crop(kv: LayerKV, n: int) -> LayerKV:
    """The cache without its last `n` positions."""
    return [(k[:, : k.shape[1] - n], v[:, : v.shape[1] - n]) for k, v in kv]


class BufferedLayer(DynamicLayer):
    """A `DynamicLayer` that writes into a preallocated buffer.

    `DynamicLayer` concatenates the whole cache with each new token, which on CPU costs more
    than the matmuls of a small model; here each step copies only the new positions.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, d = key_states.shape
        self._k = key_states.new_zeros((b, h, self.capacity, d))
        self._v = value_states.new_zeros((b, value_states.shape[1], self.capacity, value_states.shape[3]))
        self.device, self.dtype = key_states.device, key_states.dtype
        self.is_initialized = True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        assert self._k is not None and self._v is not None
        end = self.length + key_states.shape[-2]
        if end > self._k.shape[-2]:
            grow = max(end, 2 * self._k.shape[-2]) - self._k.shape[-2]
            self._k = torch.nn.functional.pad(self._k, (0, 0, 0, grow))
            self._v = torch.nn.functional.pad(self._v, (0, 0, 0, grow))
        self._k[:, :, self.length : end] = key_states
        self._v[:, :, self.length : end] = value_states
        self.length = end
        self._views()
        return self.keys, self.values  # type: ignore[return-value]

    def _views(self) -> None:
        assert self._k is not None and self._v is not None
        self.keys, self.values = self._k[:, :, : self.length], self._v[:, :, : self.length]

    def get_seq_length(self) -> int:
        return self.length

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._k, self._v = self._k[indices], self._v[indices]  # type: ignore[index]
            self._views()

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("BufferedLayer does not crop")


def build_cache(pasts: Sequence[LayerKV | None], capacity: int) -> tuple[DynamicCache, int]:
    """A batched cache holding each row's past, left-padded to the longest (width P); returns it and P.

    `capacity` is the total length the call may reach (P + new tokens + max new tokens).
    """
    lengths = [0 if not p else int(p[0][0].shape[1]) for p in pasts]
    width = max(lengths, default=0)
    ref = next((p for p in pasts if p), None)
    cache = DynamicCache()
    # Layers without a past are created on first use, as DynamicCache does with DynamicLayer.
    cache.layer_class_to_replicate = partial(BufferedLayer, capacity)  # type: ignore[assignment]
    if ref is None:
        return cache, 0
    layers = []
    for layer, (k0, v0) in enumerate(ref):
        buf = BufferedLayer(capacity)
        b = len(pasts)
        buf.lazy_initialization(
            k0.new_empty((b, k0.shape[0], 0, k0.shape[2])), v0.new_empty((b, v0.shape[0], 0, v0.shape[2]))
        )
        for i, p in enumerate(pasts):
            if lengths[i]:
                buf._k[i, :, width - lengths[i] : width] = p[layer][0]  # type: ignore[index]
                buf._v[i, :, width - lengths[i] : width] = p[layer][1]  # type: ignore[index]
        buf.length = width
        buf._views()
        layers.append(buf)
    cache.layers = layers
    return cache, width


def extract_row(
    layers: Sequence[tuple[torch.Tensor, torch.Tensor]], row: int, spans: Sequence[tuple[int, int]]
) -> LayerKV:
    """Positions `spans` (`[start, end)` ranges: the real ones) of one row of a batched cache, copied."""
    spans = [(a, b) for a, b in spans if b > a]
    return [
        (
            torch.cat([k[row, :, a:b] for a, b in spans], dim=1),
            torch.cat([v[row, :, a:b] for a, b in spans], dim=1),
        )
        for k, v in layers
    ]


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
