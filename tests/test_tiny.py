from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lightning_asym.backends.tiny import ARCHS, bpe_tokenizer, build_tiny, byte_tokenizer, tiny_causal_lm


def test_byte_tokenizer_layout_and_round_trip() -> None:
    tok = byte_tokenizer()
    assert len(tok) == 259
    assert tok.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>", "<pad>"]) == [256, 257, 258]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<pad>"
    text = "héllo\n  wörld 🙂"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids == list(text.encode("utf-8"))
    assert tok.decode(ids) == text


def test_byte_tokenizer_chat_template_roles() -> None:
    tok = byte_tokenizer()
    msgs = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "U"},
        {"role": "assistant", "content": "A"},
        {"role": "tool", "content": "T"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
        "<|im_start|>tool\nT<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_bpe_tokenizer_deterministic_and_shorter() -> None:
    corpus = ["the hotel is near the station", "the restaurant is near the hotel"] * 5
    a, b = bpe_tokenizer(corpus, 300), bpe_tokenizer(corpus, 300)
    assert a.get_vocab() == b.get_vocab()
    text = "the hotel is near the restaurant"
    ids = a(text, add_special_tokens=False)["input_ids"]
    assert len(ids) < len(text.encode())
    assert a.decode(ids) == text
    assert a.eos_token == "<|im_end|>" and a.chat_template == byte_tokenizer().chat_template


def test_bpe_tokenizer_splits_digits() -> None:
    corpus = [
        '{"id": "H1", "area": "beach", "price": 275}, {"id": "H2", "area": "airport", "price": 90}'
    ] * 20
    tok = bpe_tokenizer(corpus, 400)
    text = '{"id": "H3", "area": "beach", "price": 1275}'
    pieces = [tok.decode([i]) for i in tok(text, add_special_tokens=False)["input_ids"]]
    assert "".join(pieces) == text
    assert [p for p in pieces if any(c.isdigit() for c in p)] == ["3", "1", "2", "7", "5"]
    fused = bpe_tokenizer(corpus, 400, split_digits=False)
    assert any(
        len(p) > 1 and any(c.isdigit() for c in p) for p in map(fused.decode, fused(text)["input_ids"])
    )


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_causal_lm_deterministic(arch: str) -> None:
    tok = byte_tokenizer()
    m1 = tiny_causal_lm(tok, arch, hidden_size=32, seed=3)
    m2 = tiny_causal_lm(tok, arch, hidden_size=32, seed=3)
    m3 = tiny_causal_lm(tok, arch, hidden_size=32, seed=4)
    s1, s2, s3 = m1.state_dict(), m2.state_dict(), m3.state_dict()
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert any(not torch.equal(s1[k], s3[k]) for k in s1)
    x = torch.tensor([[1, 2, 3]])
    with torch.no_grad():
        assert m1(x).logits.shape == (1, 3, len(tok))


def test_build_tiny_with_bpe() -> None:
    model, tok = build_tiny(arch="qwen2", tokenizer="bpe", vocab_size=300, hidden_size=32)
    assert model.config.vocab_size == len(tok)
    with pytest.raises(ValueError, match="arch"):
        build_tiny(arch="nope")
