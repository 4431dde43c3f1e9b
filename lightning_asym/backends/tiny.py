"""Tiny tokenizers and randomly initialised causal LMs, built locally: for tests and quick runs.

Nothing here touches the network. Models are deterministic given `seed`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedModel, PreTrainedTokenizerFast

from lightning_asym.backends.templates import CHATML_TEMPLATE

SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<pad>"]
"""Special tokens of the tiny tokenizers; `<|im_end|>` is the eos token."""


def _wrap(tok: Tokenizer) -> PreTrainedTokenizerFast:
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<pad>",
        additional_special_tokens=["<|im_start|>"],
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHATML_TEMPLATE
    return fast


def _byte_level(tok: Tokenizer, split_digits: bool = False) -> Tokenizer:
    # No word-level regex split: every byte sequence round-trips exactly, and suffix tokenization
    # equals whole-string tokenization at special-token boundaries. `split_digits` makes each
    # digit a token of its own (as Llama's tokenizer does): otherwise BPE trained on templated
    # text fuses numbers with their neighbours (`"H1", "area": "beach", "price": 2` as one
    # token), and a model must learn every such combination separately to read it.
    level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    if split_digits:
        digits = pre_tokenizers.Split(Regex(r"\d"), behavior="isolated")
        tok.pre_tokenizer = pre_tokenizers.Sequence([digits, level])
    else:
        tok.pre_tokenizer = level
    tok.decoder = decoders.ByteLevel()
    return tok


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer: 256 byte tokens (ids 0-255), then `<|im_start|>`, `<|im_end|>`, `<pad>`.

    It carries a ChatML chat template handling system, user, assistant and tool roles.
    """
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    byte_to_char = _bytes_to_unicode()
    vocab = {byte_to_char[b]: b for b in range(256)}
    assert set(vocab) == set(alphabet)
    tok = _byte_level(Tokenizer(models.BPE(vocab=vocab, merges=[])))
    tok.add_special_tokens(SPECIAL_TOKENS)
    return _wrap(tok)


def bpe_tokenizer(
    corpus: Iterable[str], vocab_size: int = 512, split_digits: bool = True
) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on `corpus` (deterministic), with the same specials and template.

    Useful for a critic whose tokenizer differs from the actor's, and for shorter sequences.
    `split_digits`: every digit is a token of its own and never part of a merge.
    """
    tok = _byte_level(Tokenizer(models.BPE()), split_digits)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sorted(corpus), trainer=trainer)
    return _wrap(tok)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (what `ByteLevel` uses)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


ARCHS = ("llama", "qwen2", "gpt2", "mistral")


def tiny_config(
    tokenizer: Any,
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    max_positions: int = 4096,
) -> Any:
    """The transformers config of a tiny model whose vocabulary fits `tokenizer`."""
    from transformers import GPT2Config, LlamaConfig, MistralConfig, Qwen2Config

    ids = {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id
        if tokenizer.bos_token_id is not None
        else tokenizer.eos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if arch == "gpt2":
        return GPT2Config(
            n_embd=hidden_size, n_layer=num_layers, n_head=num_heads, n_positions=max_positions, **ids
        )
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "mistral": MistralConfig}.get(arch)
    if cls is None:
        raise ValueError(f"unknown tiny arch {arch!r}; choose one of {ARCHS}")
    kw: dict[str, Any] = dict(
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads or num_heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        **ids,
    )
    if arch == "mistral":
        kw["sliding_window"] = None
    return cls(**kw)


def tiny_causal_lm(
    tokenizer: Any,
    arch: str = "llama",
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    seed: int = 0,
    max_positions: int = 4096,
) -> PreTrainedModel:
    """A randomly initialised causal LM (`arch` in llama, qwen2, gpt2, mistral), same weights for the same seed."""
    from transformers import AutoModelForCausalLM

    cfg = tiny_config(tokenizer, arch, hidden_size, num_layers, num_heads, num_kv_heads, max_positions)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(cfg)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model.eval()


def build_tiny(
    arch: str = "llama",
    tokenizer: str = "byte",
    corpus: list[str] | None = None,
    vocab_size: int = 512,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int | None = None,
    seed: int = 0,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Model and tokenizer from a plain dict of options (what `TransformersBackend(tiny={...})` passes).

    `tokenizer` is "byte" or "bpe" (trained on `corpus`, default: a small built-in text).
    """
    if tokenizer == "byte":
        tok = byte_tokenizer()
    elif tokenizer == "bpe":
        tok = bpe_tokenizer(corpus or _DEFAULT_CORPUS, vocab_size)
    else:
        raise ValueError(f"tiny tokenizer must be 'byte' or 'bpe', got {tokenizer!r}")
    model = tiny_causal_lm(tok, arch, hidden_size, num_layers, num_heads, num_kv_heads, seed)
    return model, tok


_DEFAULT_CORPUS = [
    "You are a helpful assistant. Use the tools when needed.",
    "The user asks for a hotel, a restaurant or a flight; ask about their preferences.",
    '<tool_call>\n{"name": "search", "arguments": {"aspect": "hotel"}}\n</tool_call>',
    '<tool_response>\n{"results": []}\n</tool_response>',
    "Thank you! Is there anything else I can help you with today?",
]
