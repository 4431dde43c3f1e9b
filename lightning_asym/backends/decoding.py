"""The batched decode loop of `TransformersBackend`, and shared-prefix encoding.

`Forward` is `(input_ids, attention_mask, position_ids, cache) -> last-position logits`; the
loop calls it once for the prompt tokens of every row, then once per decoding step for all
rows still generating. Prompts of very different lengths are first encoded in groups of
similar length (`prefill_groups`), for the actor's turns and the critic's reviews alike.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.kv import LayerKV, build_cache, extract_row, sample_next

Forward = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], torch.Tensor]


@dataclass
class DecodeRow:
    """One conversation of a call: what to feed on top of its past, and what came out."""

    feed: list[int]
    past: LayerKV | None
    max_new: int
    gen: torch.Generator | None
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish: str = "length"
    kv: LayerKV | None = None
    """After decoding: the cache of past + fed + generated tokens but the last one (not fed yet)."""


def share_prefixes(
    forward: Forward,
    rows: Sequence[DecodeRow],
    prefixes: OrderedDict[tuple[int, ...], LayerKV],
    max_prefixes: int,
    device: torch.device,
    min_len: int = 16,
) -> None:
    """Give rows without a past the KV of a prompt prefix they share, encoding it only once.

    New episodes usually start with the same system prompt: it is taken from `prefixes` (an
    LRU of encoded prefixes), or, when at least two rows share `min_len` leading tokens,
    encoded once and added to it. The tokens each row sees are unchanged.
    """
    fresh = [r for r in rows if r.past is None and len(r.feed) > min_len]
    for r in fresh:
        hit = next(
            (p for p in reversed(prefixes) if len(p) < len(r.feed) and tuple(r.feed[: len(p)]) == p), None
        )
        if hit is not None:
            prefixes.move_to_end(hit)
            r.past, r.feed = prefixes[hit], r.feed[len(hit) :]
    fresh = [r for r in fresh if r.past is None]
    if len(fresh) < 2:
        return
    n = min(len(r.feed) for r in fresh) - 1  # every row keeps at least one token to feed
    first = fresh[0].feed
    for r in fresh[1:]:
        n = next((i for i in range(n) if r.feed[i] != first[i]), n)
    if n < min_len:
        return
    prefix = tuple(first[:n])
    cache, _ = build_cache([None], n)
    ids = torch.tensor([prefix], dtype=torch.long, device=device)
    forward(ids, torch.ones_like(ids), torch.arange(n, device=device)[None], cache)
    kv = extract_row([(lay.keys, lay.values) for lay in cache.layers], 0, [(0, n)])
    prefixes[prefix] = kv
    while len(prefixes) > max_prefixes:
        prefixes.popitem(last=False)
    for r in fresh:
        r.past, r.feed = kv, r.feed[n:]


def length_groups(lengths: Sequence[int], max_waste: float = 0.25) -> list[list[int]]:
    """Indices of `lengths` in groups to encode separately, so that padding stays small.

    A batched forward pads every row to the longest one. Rows are taken longest first, and a
    group is closed when adding the next row would make its padded area (rows x longest) more
    than `1 + max_waste` times its real tokens. Each group holds rows of similar length; the
    groups are ordered longest first, and every index appears exactly once.
    """
    if max_waste < 0:
        raise ValueError(f"max_waste must be >= 0, got {max_waste}")
    groups: list[list[int]] = []
    current: list[int] = []
    tokens = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if current and (len(current) + 1) * lengths[current[0]] > (1 + max_waste) * (tokens + lengths[i]):
            groups.append(current)
            current, tokens = [], 0
        current.append(i)
        tokens += lengths[i]
    if current:
        groups.append(current)
    return groups


ONE_FORWARD = SamplingParams(max_new_tokens=1, temperature=0.0)
"""`decode_rows` with this runs exactly one forward (the greedy token it samples is discarded): the
rows' pasts grow by what was fed, and the forward's logits are those of each row's last position."""


def prefill_groups(
    forward: Forward,
    rows: Sequence[DecodeRow],
    pad_id: int,
    device: torch.device,
    max_waste: float = 0.25,
) -> None:
    """Encode all but the last fed token of each row, in groups of similar length (`length_groups`).

    Each encoded part moves from the row's `feed` into its `past`, so the batched call that
    follows feeds one token per row and pads nothing. Rows that all fit one group are left as
    they are: one forward encodes them with little padding anyway. The tokens each row sees,
    and their positions, are unchanged.
    """
    long = [r for r in rows if len(r.feed) > 1]
    groups = length_groups([len(r.feed) - 1 for r in long], max_waste)
    if len(groups) < 2:
        return
    for group in groups:
        part = [DecodeRow(long[j].feed[:-1], long[j].past, 1, None) for j in group]
        # one greedy token (discarded) is exactly one forward; its kv is past + what was fed
        decode_rows(forward, part, ONE_FORWARD, [], pad_id, device, lambda ids: "")
        for j, done in zip(group, part):
            long[j].past, long[j].feed = done.kv, long[j].feed[-1:]


def decode_rows(
    forward: Forward,
    rows: Sequence[DecodeRow],
    sampling: SamplingParams,
    eos_ids: Sequence[int],
    pad_id: int,
    device: torch.device,
    decode_text: Callable[[list[int]], str],
    max_waste: float | None = None,
) -> None:
    """Generate for all `rows` together, filling their ids, log-probs, finish reason and `kv`.

    Layout of row i (width P = longest past, N = longest feed): `[pad | past_i | pad | feed_i]`,
    then one column per step. Padding in the middle is harmless: every forward gets the mask,
    and `position_ids = cumsum(mask) - 1`. Finished rows leave the batch. With `max_waste`, rows
    whose feeds differ in length are first encoded in groups (`prefill_groups`), so that no
    row is padded to a much longer one.
    """
    if max_waste is not None:
        prefill_groups(forward, rows, pad_id, device, max_waste)
    b = len(rows)
    n_new = max(len(r.feed) for r in rows)
    width = max((int(r.past[0][0].shape[1]) for r in rows if r.past), default=0)
    cache, width = build_cache([r.past for r in rows], width + n_new + max(r.max_new for r in rows))
    mask = torch.zeros((b, width + n_new), dtype=torch.long, device=device)
    ids = torch.full((b, n_new), pad_id, dtype=torch.long, device=device)
    spans: list[tuple[tuple[int, int], int]] = []  # per row: its past's columns, first fed column
    for i, r in enumerate(rows):
        past_len = 0 if not r.past else int(r.past[0][0].shape[1])
        spans.append(((width - past_len, width), width + n_new - len(r.feed)))
        mask[i, width - past_len : width] = 1
        mask[i, width + n_new - len(r.feed) :] = 1
        ids[i, n_new - len(r.feed) :] = torch.tensor(r.feed, dtype=torch.long)
    pos_all = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = forward(ids, mask, pos_all[:, width:], cache)
    next_pos = pos_all[:, -1] + 1
    active = list(range(b))
    eos = set(eos_ids)
    while True:
        toks, lps = sample_next(logits, sampling, [rows[r].gen for r in active])  # type: ignore[misc]
        toks_l, lps_l = toks.tolist(), lps.tolist()
        keep = []
        for j, r in enumerate(active):
            row = rows[r]
            row.ids.append(toks_l[j])
            row.logprobs.append(lps_l[j])
            if toks_l[j] in eos or (sampling.stop and has_stop(decode_text(row.ids), sampling.stop)):
                row.finish = "stop"
            elif len(row.ids) >= row.max_new:
                row.finish = "length"
            else:
                keep.append(j)
                continue
            past_span, start = spans[r]
            layers = [(lay.keys, lay.values) for lay in cache.layers]
            row.kv = extract_row(layers, j, [past_span, (start, mask.shape[1])])
        if not keep:
            return
        if len(keep) < len(active):
            idx = torch.tensor(keep, dtype=torch.long, device=device)
            cache.batch_select_indices(idx)
            mask, toks, next_pos = mask[idx], toks[idx], next_pos[idx]
            active = [active[j] for j in keep]
        mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
        logits = forward(toks[:, None], mask, next_pos[:, None], cache)
        next_pos = next_pos + 1


def has_stop(text: str, stops: Sequence[str]) -> bool:
    return any(s and s in text for s in stops)


def cut_after_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to and including the earliest stop string."""
    ends = [text.find(s) + len(s) for s in stops if s and s in text]
    return text[: min(ends)] if ends else text
