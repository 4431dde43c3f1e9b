from __future__ import annotations

import pytest

from lightning_asym.backends.toolcalls import (
    MAX_JSON_DEPTH,
    JSONDepthError,
    format_action,
    json_depth,
    loads,
    parse_action,
    tools_prompt,
)
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


DEEP = '<tool_call>{"name": "search", "arguments": ' + "[" * 1500


@pytest.mark.parametrize(
    "text",
    [
        DEEP,
        DEEP + "]" * 1500 + "}</tool_call>",
        '<tool_call>{"name": "search", "arguments": "' + "[" * 1500 + '"}</tool_call>',  # a string of JSON
        '<tool_call>{"name": "search", "arguments": {"a": ' + "{" * 40 + "}" * 41 + "</tool_call>",
    ],
)
def test_deeply_nested_json_is_a_parse_error_not_a_crash(text):
    action, err = parse_action(text)
    assert action is None and "nested" in err and len(err) < 400


def test_nesting_within_the_bound_and_brackets_in_strings_parse():
    deep_ok = "[" * (MAX_JSON_DEPTH - 2) + "]" * (MAX_JSON_DEPTH - 2)
    action, err = parse_action('<tool_call>{"name": "s", "arguments": {"x": ' + deep_ok + "}}</tool_call>")
    assert err is None and action.name == "s"
    text = '{"q": "' + "[{" * 800 + '\\"]"}'
    assert json_depth(text) == 1 and loads(text) == {"q": "[{" * 800 + '"]'}
    with pytest.raises(JSONDepthError):
        loads("[" * 100 + "]" * 100)
    with pytest.raises(ValueError):  # still a ValueError for callers that catch json's errors
        loads("[" * 100 + "]" * 100)


def test_native_tool_call_arguments_nested_too_deeply():
    from types import SimpleNamespace

    from lightning_asym.backends.openai import to_completion

    def response(arguments: str):
        call = SimpleNamespace(function=SimpleNamespace(name="search", arguments=arguments))
        message = SimpleNamespace(content="", tool_calls=[call])
        usage = SimpleNamespace(prompt_tokens=3, completion_tokens=4)
        return SimpleNamespace(
            choices=[SimpleNamespace(message=message, finish_reason="tool_calls")], usage=usage
        )

    bad = to_completion(response('{"q": ' + "[" * 1500))
    assert bad.action is None and "nested deeper than" in bad.parse_error
    good = to_completion(response('{"q": [[1]]}'))
    assert good.action == Action("search", {"q": [[1]]}) and good.parse_error is None


def test_a_run_with_a_deeply_nested_call_finishes_and_writes_its_trajectories(tmp_path):
    from toy_env import GuessEnv

    from lightning_asym.backends import ScriptedBackend
    from lightning_asym.rollout import RolloutEngine
    from lightning_asym.types import read_jsonl, write_jsonl

    env = GuessEnv(num_tasks=2, max_turns=2)
    actor = ScriptedBackend(policy=lambda messages, task, rng: DEEP)
    trajs = RolloutEngine(env).collect(env.tasks("test"), actor)
    assert all(t.turns[0].parse_error and "nested" in t.turns[0].parse_error for t in trajs)
    assert trajs[0].messages[3].role == "user" and trajs[0].messages[3].content.startswith("Error:")
    path = tmp_path / "trajectories.jsonl"
    assert write_jsonl(path, trajs) == 2 and len(read_jsonl(path)) == 2
