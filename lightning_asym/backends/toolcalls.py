"""The one text format for tool calls used by local (text-only) models.

A tool call is a JSON object between tags, anywhere in the assistant's text::

    <tool_call>
    {"name": "search", "arguments": {"aspect": "hotel"}}
    </tool_call>

Text without a `<tool_call>` tag is a reply to the user: `Action("respond", {"content": text})`.
Only the first tool call of a message is used. A tag with unreadable JSON is a parse error,
which the rollout engine turns into an error observation.
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
_CALL_RE = re.compile(re.escape(TOOL_OPEN) + r"(.*?)(?:" + re.escape(TOOL_CLOSE) + r"|$)", re.DOTALL)


def parse_action(text: str) -> tuple[Action | None, str | None]:
    """Parse assistant text into an action; returns `(action, None)` or `(None, error)`."""
    m = _CALL_RE.search(text)
    if m is None:
        return Action.reply(text.strip()), None
    body = m.group(1).strip()
    try:
        obj = json.loads(body)
    except json.JSONDecodeError as e:
        return None, f"tool call is not valid JSON ({e.msg} at char {e.pos}): {body[:200]!r}"
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None, f'tool call must be an object with a string "name": {body[:200]!r}'
    args = obj.get("arguments", {})
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None, f'"arguments" of tool call {obj["name"]!r} is not a JSON object'
    if not isinstance(args, dict):
        return None, f'"arguments" of tool call {obj["name"]!r} must be a JSON object'
    if obj["name"] == RESPOND:
        return Action.reply(str(args.get("content", ""))), None
    return Action(obj["name"], args), None


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
