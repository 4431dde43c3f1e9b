"""Native tool templates: a chat template that renders `tools` itself, and the tokenizer's own response parser."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import copy

import pytest
from test_hf_backend import GENERIC_TEMPLATE, make_convs, run_episodes

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
from lightning_asym.types import Action, Message

GREEDY = SamplingParams(max_new_tokens=8, temperature=0)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "search",
            "description": "Find things",
            "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        },
    }
]

# Qwen2.5's tool format, shortened: the tools go in the system turn, tool results in a user turn.
TOOL_TEMPLATE = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}"
    "{%- if messages[0]['role'] == 'system' %}{{- messages[0]['content'] + '\\n\\n' }}{%- endif %}"
    "{{- '# Tools\\n\\nFunction signatures within <tools></tools> XML tags:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}"
    "{{- '\\n</tools>\\n\\nFor each call, return a json object with name and arguments within "
    "<tool_call></tool_call> XML tags.<|im_end|>\\n' }}"
    "{%- elif messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif not (loop.first and message.role == 'system') %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}"
    "{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
# The tools listed again just before the reply: fine alone, but not prefix-preserving across turns.
LATE_TOOLS_TEMPLATE = GENERIC_TEMPLATE.replace(
    "{% if add_generation_prompt %}",
    "{% if add_generation_prompt and tools %}{{ '<|im_start|>system\\nTools: ' + (tools | tojson) + '<|im_end|>\\n' }}"
    "{% endif %}{% if add_generation_prompt %}",
)
# transformers' own response template for the Qwen2 family (cli/serving/utils.py), without reasoning.
RESPONSE_TEMPLATE = {
    "defaults": {"role": "assistant"},
    "start_anchor": "<|im_start|>assistant\n",
    "fields": {
        "tool_calls": {
            "open_pattern": r"\s*<tool_call>",
            "close": "</tool_call>",
            "repeats": True,
            "content": "json",
            "transform": {"type": "function", "function": "{content}"},
        },
        "content": {"close_pattern": r"\s*(?:<\|im_end\|>|<\|endoftext\|>)", "content": "text"},
    },
}


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (conftest.py)


@pytest.fixture(scope="module")
def llama():
    return tiny_causal_lm(byte_tokenizer(), "llama", hidden_size=32, num_layers=2, num_heads=4, seed=2)


def tokenizer(template: str, response: dict | None = None):
    tok = byte_tokenizer()
    tok.chat_template = template
    if response is not None:
        tok.response_template = copy.deepcopy(response)
    return tok


def test_a_tool_aware_template_renders_the_tools_itself(llama) -> None:
    backend = TransformersBackend(llama, tokenizer(TOOL_TEMPLATE))
    assert backend.native_tools and not backend.template_is_fallback
    conv = make_convs(1)[0]
    text = backend.render(conv, tools=TOOLS)
    assert text.startswith("<|im_start|>system\nYou help.\n\n# Tools") and '"name": "search"' in text
    assert "To call a tool, write exactly one" not in text  # not our prompt
    assert "# Tools" not in backend.render(conv)  # no tools, no tool section
    # our format stays available, and is the fallback for templates without tools
    ours = TransformersBackend(llama, tokenizer(TOOL_TEMPLATE), native_tools=False)
    assert not ours.native_tools and "To call a tool, write exactly one" in ours.render(conv, tools=TOOLS)
    generic = TransformersBackend(llama, tokenizer(GENERIC_TEMPLATE))
    assert not generic.native_tools and "To call a tool, write exactly one" in generic.render(
        conv, tools=TOOLS
    )
    with pytest.raises(ValueError, match="native_tools: true, but the chat template does not render `tools`"):
        TransformersBackend(llama, tokenizer(GENERIC_TEMPLATE), native_tools=True)


def test_a_tool_template_that_breaks_prefixes_falls_back_to_our_format(llama) -> None:
    backend = TransformersBackend(llama, tokenizer(LATE_TOOLS_TEMPLATE))
    assert not backend.native_tools and not backend.template_is_fallback
    assert "To call a tool, write exactly one" in backend.render(make_convs(1)[0], tools=TOOLS)
    with pytest.raises(ValueError, match="with tools is not prefix-preserving"):
        TransformersBackend(llama, tokenizer(LATE_TOOLS_TEMPLATE), native_tools=True)


def test_native_rendering_keeps_the_token_record_and_kv_equivalence(llama) -> None:
    tok = tokenizer(TOOL_TEMPLATE, RESPONSE_TEMPLATE)
    runs = {}
    for kv in (True, False):
        backend = TransformersBackend(llama, tok, use_kv_cache=kv)
        convs = make_convs(2)
        runs[kv] = run_episodes(backend, convs, turns=4, tools=TOOLS)
    for turn, (with_kv, without) in enumerate(zip(runs[True], runs[False])):
        for a, b in zip(with_kv, without):
            assert a.completion_ids == b.completion_ids and a.prompt_ids == b.prompt_ids
            assert a.prefix_len == (0 if turn == 0 else None) and a.action is not None
    # the recorded tokens are exactly the rendered conversation: the tools stayed in the prefix
    seen = [i for comps in runs[True] for i in comps[0].prompt_ids + comps[0].completion_ids]
    last = runs[True][-1][0]
    full = backend.render(convs[0][:-2], add_generation_prompt=True, tools=TOOLS)
    assert tok.decode(seen, skip_special_tokens=False) == full + tok.decode(
        last.completion_ids, skip_special_tokens=False
    )
    assert "<tools>" in full and full.count("<|im_start|>assistant\n") == 4
    assert len(last.prompt_ids) < 60  # later turns encode only their new tokens


def test_replies_are_parsed_by_the_tokenizers_response_template(llama) -> None:
    native = TransformersBackend(llama, tokenizer(TOOL_TEMPLATE, RESPONSE_TEMPLATE))
    prompt = native.render(make_convs(1)[0], tools=TOOLS)
    raw = '<tool_call>\n{"name": "search", "arguments": {"n": "7"}}\n</tool_call><|im_end|>'
    text = raw.replace("<|im_end|>", "")
    # the tokenizer's parser casts "7" by the tool's schema (integer); ours keeps the string
    assert native.parse(text, raw, prompt, TOOLS) == (Action("search", {"n": 7}), None)
    ours = TransformersBackend(llama, tokenizer(TOOL_TEMPLATE))  # no response_template: our parser
    assert ours.native_tools and ours.parse(text, raw, prompt, TOOLS) == (Action("search", {"n": "7"}), None)
    assert native.parse("Hello there.", "Hello there.<|im_end|>", prompt, TOOLS) == (
        Action.reply("Hello there."),
        None,
    )
    two = raw.replace("<|im_end|>", "\n") + raw
    action, err = native.parse(two, two, prompt, TOOLS)
    assert action is None and "2 tool calls" in err
    deep = '<tool_call>\n{"name": "search", "arguments": ' + "[" * 1500
    action, err = native.parse(deep, deep, prompt, TOOLS)
    assert action is None and "nested deeper" in err
    bad = "<tool_call>\n{not json}\n</tool_call><|im_end|>"
    action, err = native.parse(bad, bad, prompt, TOOLS)
    assert action is None and err
    # a whole call goes through the tokenizer's parser without trouble
    comp = native.complete([make_convs(1)[0]], TOOLS, GREEDY, keys=["k"])[0]
    assert comp.action is not None or comp.parse_error


def test_native_tool_results_use_the_templates_tool_turn(llama) -> None:
    backend = TransformersBackend(llama, tokenizer(TOOL_TEMPLATE))
    conv = [
        Message("user", "find"),
        Message("assistant", "<tool_call>x</tool_call>"),
        Message("tool", "Hotel A"),
    ]
    assert "<|im_start|>user\n<tool_response>\nHotel A\n</tool_response><|im_end|>" in backend.render(
        conv, tools=TOOLS
    )
