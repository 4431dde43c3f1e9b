"""The one text format for tool calls used by local (text-only) models.

A tool call is a JSON object between tags, anywhere in the assistant's text::

    <tool_call>
    {"name": "search", "arguments": {"aspect": "hotel"}}
    </tool_call>

Text without a `<tool_call>` tag is a reply to the user: `Action("respond", {"content": text})`.
Only the first tool call of a message is used. A tag with unreadable JSON, or JSON nested
deeper than `MAX_JSON_DEPTH`, is a parse error, which the rollout engine turns into an error
observation.
"""

from __future__ import annotations

import json
import re
from typing import Any

from lightning_asym.types import RESPOND, Action

TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"
FORMAT_HINT = (
    f'to call a tool write {TOOL_OPEN}{{"name": ..., "arguments": {{...}}}}{TOOL_CLOSE}; '
    "any other text is sent to the user"
)
"""The tool-call format in one clause, for whoever tells an actor its output did not parse."""
MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects a tool call's JSON may have. Deeper is a parse error:
json's recursive decoder raises `RecursionError` near 1,000 levels, and every later recursive
walk (trajectory writers, deep copies) would too; real tool arguments are a few levels deep."""
_JSON_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_CALL_RE = re.compile(re.escape(TOOL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CLOSE) + r"|$)", re.DOTALL)


class JSONDepthError(ValueError):
    """JSON nested deeper than `MAX_JSON_DEPTH` (a `ValueError`, as `json.JSONDecodeError` is)."""


def json_depth(text: str) -> int:
    """The deepest nesting of `[`/`{` in JSON `text`, brackets inside strings not counted."""
    depth = deepest = 0
    for m in _JSON_TOKEN_RE.finditer(text):
        c = m.group()
        if c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def loads(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` for model output: nesting deeper than `max_depth` raises `JSONDepthError`
    instead of crashing the run with a `RecursionError` (the text and native tool-call paths)."""
    if json_depth(text) > max_depth:
        raise JSONDepthError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except RecursionError:  # not reached within the depth bound; kept so no input crashes a run
        raise JSONDepthError("nested too deeply for the JSON decoder") from None


def parse_action(text: str) -> tuple[Action | None, str | None]:
    """Parse assistant text into an action; returns `(action, None)` or `(None, error)`."""
    m = _CALL_RE.search(text)
    if m is None:
        return Action.reply(text.strip()), None
    body = m.group(1).strip()
    try:
        obj = loads(body)
    except json.JSONDecodeError as e:
        return None, f"tool call is not valid JSON ({e.msg} at char {e.pos}): {body[:200]!r}"
    except JSONDepthError as e:
        return None, f"tool call JSON is {e}: {body[:200]!r}"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None, f'tool call must be an object with a string "name": {body[:200]!r}'
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = loads(args)
        except JSONDepthError as e:
            return None, f'"arguments" of tool call {obj["name"]!r} is JSON {e}'
        except json.JSONDecodeError:
            return None, f'"arguments" of tool call {obj["name"]!r} is not a JSON object'
    if not isinstance(args, dict):
        return None, f'"arguments" of tool call {obj["name"]!r} must be a JSON object'
    if obj["name"] == RESPOND:
        return Action.reply(str(args.get("content", ""))), None
    return Action(obj["name"], args), None


def action_from_message(message: dict[str, Any]) -> tuple[Action | None, str | None]:
    """The action in a parsed assistant message (`{"content", "tool_calls"}`, as the tokenizer's
    `parse_response` returns it); the same rules and errors as `parse_action`."""
    calls = message.get("tool_calls") or []
    if not calls:
        return Action.reply(str(message.get("content") or "").strip()), None
    if len(calls) > 1:
        return None, f"the reply makes {len(calls)} tool calls; make one call per turn"
    fn = calls[0].get("function", calls[0]) if isinstance(calls[0], dict) else None
    if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
        return None, f'tool call must be an object with a string "name": {str(calls[0])[:200]!r}'
    args = fn.get("arguments", {})
    if isinstance(args, str):
        try:
            args = loads(args) if args.strip() else {}
        except ValueError as e:
            return None, f'"arguments" of tool call {fn["name"]!r} is not a JSON object ({e})'
    if not isinstance(args, dict):
        return None, f'"arguments" of tool call {fn["name"]!r} must be a JSON object'
    if fn["name"] == RESPOND:
        return Action.reply(str(args.get("content", ""))), None
    return Action(fn["name"], args), None


def format_action(action: Action) -> str:
    """The text a model should emit for `action` (inverse of `parse_action`)."""
    if action.is_reply:
        return action.content
    payload = json.dumps({"name": action.name, "arguments": action.kwargs}, sort_keys=True)
    return f"{TOOL_OPEN}\n{payload}\n{TOOL_CLOSE}"


def tools_prompt(tools: list[dict[str, Any]]) -> str:
    """Instructions appended to the system message so a text-only model can call tools."""
    if not tools:
        return ""
    lines = [
        "# Tools",
        "To call a tool, write exactly one tool call in this format and nothing after it:",
        f'{TOOL_OPEN}\n{{"name": <tool name>, "arguments": <JSON object>}}\n{TOOL_CLOSE}',
        "Anything else you write is sent to the user. Available tools:",
    ]
    for t in tools:
        fn = t.get("function", t)
        lines.append(
            json.dumps(
                {
                    "name": fn["name"],
                    "description": fn.get("description", ""),
                    "parameters": fn.get("parameters", {}),
                },
                sort_keys=True,
            )
        )
    return "\n".join(lines)
