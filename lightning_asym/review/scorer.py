"""`VerdictScorer`: P(revise) of review prompts from one forward pass, with a KV cache per conversation.

A local critic does not need to generate its verdict: feeding `prompt ids + verdict prefix`
(`review.verdict`) and reading the logits of the two verdict tokens at the last position gives
P(revise) in one forward pass, exactly as `CriticSFT` validation and calibration score it.

Each conversation (the `ReviewRequest.key` of an episode) keeps the token ids the critic last
read and their KV cache. The review prompt is laid out so that it grows at the end of the
transcript: instruction, policy and worked examples, then the privileged text (fixed for the
episode), then the transcript, then the proposed action. A new review tokenizes its whole
prompt (cheap), finds the longest common token prefix with what the conversation last read, keeps that part of the cache and
encodes only the rest: the messages appended since the last review, the proposed action and the
verdict prefix. A revision's re-review shares everything up to the action, so it encodes little
more than the new action. Because reuse is decided on token ids, not on text, the scored tokens
are always exactly those of a fresh full encoding; only the arithmetic order differs.

With `max_messages`, the transcript is a sliding window whose first lines change as it slides:
the common prefix then ends where the transcript begins, and each review re-encodes the whole
transcript (still batched; the instruction and policy stay cached).

The rows of a call go through batched forwards (`backends.decoding.decode_rows`, which lays
rows out with left padding, an explicit attention mask and position ids), one per group of rows
with similar new-token counts (`prefill_groups`: one long tool result would otherwise pad every
row of the batch to its length, 1.7x the real tokens on recorded retail reviews); new
conversations share the encoding of their common opening (`share_prefixes`). Feedback, when asked for, is
generated greedily (or with the given sampling) from the cached verdict position on, after
forcing the revise token and the answer's `FEEDBACK:` head.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.decoding import (
    ONE_FORWARD,
    DecodeRow,
    cut_after_stop,
    decode_rows,
    share_prefixes,
)
from lightning_asym.backends.kv import LayerKV, crop, forward_kwargs, seeded_generator, weights_version
from lightning_asym.review.verdict import VerdictProbe, answer_ids, revise_logit, verdict_probe
from lightning_asym.types import REVISE, Message


@dataclass
class Scored:
    """One scored prompt: P(revise) (None when the prompt does not fit the context), its ids and cache."""

    p_revise: float | None
    ids: list[int]
    kv: LayerKV | None = None


@dataclass
class _Seen:
    ids: list[int]
    kv: LayerKV


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two id lists."""
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


class VerdictScorer:
    """Scores review prompts of a local causal LM and keeps each conversation's KV cache.

    Args:
        model, tokenizer, render, end_of_turn, eos_ids: the critic's model and its rendering, as
            `TransformersBackend` holds them (`backend.model`, `.tokenizer`, `.render`,
            `.end_of_turn`, `.eos_ids`), so the tokens are those `CriticSFT` trains on.
        cache_size: how many conversations keep their cache (least recently reviewed dropped
            first). Keep it at least the number of episodes played together; memory is about
            `2 * layers * kv_heads * head_dim` values per token (23 KB in bfloat16 for SmolLM2-135M).
        max_context: most tokens a prompt may have (default: the model's position limit).
        prefix_cache_size: shared openings of new conversations kept encoded (0: none).
        max_waste: rows are encoded in groups of similar new-token counts, each padded to its
            longest by at most this share (`backends.decoding.prefill_groups`); None encodes all
            rows in one forward.

    Counters: `encoded_tokens` (fed to the model), `reused_tokens` (taken from a cache) and
    `padded_tokens` (fed to the model's forwards, padding included).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        render: Callable[..., str],
        end_of_turn: str,
        eos_ids: Sequence[int],
        *,
        cache_size: int = 64,
        max_context: int | None = None,
        prefix_cache_size: int = 4,
        max_waste: float | None = 0.25,
    ) -> None:
        if cache_size < 0:
            raise ValueError(f"model.reviewer.init_args.cache_size must be >= 0, got {cache_size}")
        self.model, self.tokenizer, self.render = model, tokenizer, render
        self.eos_ids = list(eos_ids)
        self.probe: VerdictProbe = verdict_probe(tokenizer, end_of_turn)
        self.head = self._revise_head(end_of_turn)
        self.cache_size, self.prefix_cache_size = cache_size, prefix_cache_size
        cfg = getattr(model, "config", None)
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self._cache_kwarg, self._keep = forward_kwargs(model)
        self._seen: OrderedDict[Hashable, _Seen] = OrderedDict()
        self._prefixes: OrderedDict[tuple[int, ...], LayerKV] = OrderedDict()
        self._weights: tuple[int, ...] | None = None
        self.max_waste = max_waste
        self.encoded_tokens = 0
        self.reused_tokens = 0
        self.padded_tokens = 0

    def _revise_head(self, end_of_turn: str) -> list[int]:
        """The revise answer's tokens up to where the feedback starts (`VERDICT: revise\\nFEEDBACK:`)."""
        a = answer_ids(self.tokenizer, REVISE, "Check it.", end_of_turn)
        b = answer_ids(self.tokenizer, REVISE, "", end_of_turn)
        head = a[: common_prefix(a, b)]
        start = [*self.probe.prefix, self.probe.revise_id]
        return head if head[: len(start)] == start else start

    # ------------------------------------------------------------------ encoding

    def ids(self, prompt: Sequence[Message]) -> list[int]:
        """The scored token ids of a review prompt: the rendered prompt, then the verdict prefix."""
        text = self.render(list(prompt), True)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"]) + self.probe.prefix

    @property
    def num_cached(self) -> int:
        """How many conversations hold a cache now."""
        return len(self._seen)

    def release(self, keys: Sequence[Hashable]) -> None:
        """Forget these conversations' caches (their episodes ended)."""
        for k in keys:
            self._seen.pop(k, None)

    def reset(self) -> None:
        self._seen.clear()
        self._prefixes.clear()

    def _check_weights(self) -> None:
        version = weights_version(self.model)
        if self._weights is not None and version != self._weights:
            self.reset()  # caches of other weights would give other scores
        self._weights = version

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            **{self._cache_kwarg: cache},
            **self._keep,
        )
        return out.logits[:, -1]

    # ------------------------------------------------------------------ scoring

    def score(self, prompts: Sequence[Sequence[Message]], keys: Sequence[Hashable | None]) -> list[Scored]:
        """P(revise) of each prompt, all rows in one forward; keyed rows reuse and update their cache."""
        if len(keys) != len(prompts):
            raise ValueError(f"got {len(prompts)} prompts and {len(keys)} keys")
        self._check_weights()
        out = [Scored(None, self.ids(p)) for p in prompts]
        rows: list[tuple[int, DecodeRow]] = []
        for i, (s, key) in enumerate(zip(out, keys)):
            if self.max_context and len(s.ids) > self.max_context:
                continue
            seen = self._seen.get(key) if key is not None else None
            past, feed = None, s.ids
            if seen is not None:
                # keep at least one token to feed: its logits are the verdict's
                reuse = min(common_prefix(seen.ids, s.ids), len(s.ids) - 1)
                if reuse > 0:
                    past, feed = crop(seen.kv, len(seen.ids) - reuse), s.ids[reuse:]
            rows.append((i, DecodeRow(list(feed), past, 1, None)))
        if not rows:
            return out
        decode = [r for _, r in rows]
        with torch.no_grad():
            if self.prefix_cache_size > 0:
                share_prefixes(self._forward, decode, self._prefixes, self.prefix_cache_size, self.device)
            fed = [len(r.feed) for r in decode]  # before prefill_groups moves some into the past
            self.encoded_tokens += sum(fed)
            logits = self._verdict_logits(decode)
            p = torch.sigmoid(revise_logit(logits, self.probe)).tolist()
        for j, (i, r) in enumerate(rows):
            s = out[i]
            s.p_revise, s.kv = float(p[j]), r.kv
            self.reused_tokens += len(s.ids) - fed[j]
            key = keys[i]
            if key is not None and self.cache_size > 0 and r.kv is not None:
                self._seen[key] = _Seen(s.ids, r.kv)
                self._seen.move_to_end(key)
        while len(self._seen) > self.cache_size:
            self._seen.popitem(last=False)
        return out

    def _verdict_logits(self, rows: list[DecodeRow]) -> torch.Tensor:
        """The last-position logits of `rows` (each row's past + feed), all rows in one batch."""
        logits: list[torch.Tensor] = []

        def forward(ids: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor, cache: Any) -> torch.Tensor:
            self.padded_tokens += ids.numel()
            logits.append(self._forward(ids, mask, pos, cache))
            return logits[-1]

        # one new token (the argmax, discarded): the last forward is the verdict position's; rows of
        # very different lengths are encoded in groups first (`prefill_groups`)
        decode_rows(forward, rows, ONE_FORWARD, [], self.pad_id, self.device, lambda ids: "", self.max_waste)
        return logits[-1]

    def feedback(
        self, scored: Sequence[Scored], sampling: SamplingParams, seeds: Sequence[int]
    ) -> list[tuple[str, int]]:
        """For scored rows judged revise: the answer text (`VERDICT: revise\\nFEEDBACK: ...`) and the
        number of tokens generated, all rows decoded together from their cached verdict position."""
        head = self.head[len(self.probe.prefix) :]
        rows = []
        for s, seed in zip(scored, seeds):
            if s.kv is None:
                raise ValueError("feedback needs rows that were scored (their prompt fit the context)")
            room = (
                (self.max_context - len(s.ids) - len(head)) if self.max_context else sampling.max_new_tokens
            )
            gen = None if sampling.greedy else seeded_generator(seed, 0, self.device)
            rows.append(DecodeRow(list(head), s.kv, max(0, min(sampling.max_new_tokens, room)), gen))
        live = [r for r in rows if r.max_new > 0]
        if live:
            with torch.no_grad():
                decode_rows(self._forward, live, sampling, self.eos_ids, self.pad_id, self.device, self._text)
        answers = []
        for r in rows:
            text = self._text(r.ids)
            if r.finish == "stop" and sampling.stop:
                text = cut_after_stop(text, sampling.stop)
            answers.append((self._text(self.head) + text, len(r.ids)))
        return answers

    def _text(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
