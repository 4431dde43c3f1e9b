from __future__ import annotations

import pytest

from lightning_asym.backends.toolcalls import format_action, parse_action, tools_prompt
from lightning_asym.types import Action


@pytest.mark.parametrize(
    "action",
    [
        Action("search", {"aspect": "hotel"}),
        Action("recommend", {"aspect": "car", "option_id": "C3"}),
        Action("think", {}),
    ],
)
def test_format_parse_round_trip(action):
    assert parse_action(format_action(action)) == (action, None)


def test_plain_text_is_a_reply():
    action, err = parse_action("  Which hotel area do you like?\n")
    assert err is None and action == Action.reply("Which hotel area do you like?")


def test_text_around_the_call_and_unclosed_tag():
    action, err = parse_action('Let me look. <tool_call>{"name": "search", "arguments": {"aspect": "car"}}')
    assert err is None and action == Action("search", {"aspect": "car"})


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("<tool_call>{not json}</tool_call>", "not valid JSON"),
        ('<tool_call>["search"]</tool_call>', 'string "name"'),
        ('<tool_call>{"name": "search", "arguments": [1]}</tool_call>', "must be a JSON object"),
        ('<tool_call>{"name": "search", "arguments": "nope"}</tool_call>', "not a JSON object"),
    ],
)
def test_parse_errors(text, fragment):
    action, err = parse_action(text)
    assert action is None and fragment in err


def test_respond_as_a_tool_call_is_a_reply():
    action, _ = parse_action('<tool_call>{"name": "respond", "arguments": {"content": "hi"}}</tool_call>')
    assert action == Action.reply("hi")


def test_tools_prompt_lists_every_tool():
    tools = [{"type": "function", "function": {"name": n, "parameters": {}}} for n in ("a_tool", "b_tool")]
    text = tools_prompt(tools)
    assert "a_tool" in text and "b_tool" in text and "<tool_call>" in text
    assert tools_prompt([]) == ""
