"""OpenAI's chat completion wire format: read a request, write a response, a stream or an error.

Requests are read by hand rather than by a pydantic model so every refusal is a 4xx in
OpenAI's error shape naming the field and the limit (`limits.max_messages`), and unknown fields
(`user`, `metadata`, `logprobs`, ...) are ignored as OpenAI-compatible servers do.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.backends.base import Completion, SamplingParams
from lightning_asym.serve.config import Limits
from lightning_asym.types import Message, ToolCall

ROLES = {"system", "developer", "user", "assistant", "tool"}


class RequestError(Exception):
    """A request the proxy refuses; `body()` is OpenAI's error JSON."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        type: str = "invalid_request_error",
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.type, self.code = status, message, param, type, code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


@dataclass
class ChatRequest:
    """What the proxy needs from one `POST /v1/chat/completions`."""

    messages: list[Message]
    tools: list[dict[str, Any]] = field(default_factory=list)
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stream: bool = False
    seed: int | None = None
    model: str = ""


def parse_chat_request(raw: bytes, limits: Limits, defaults: SamplingParams) -> ChatRequest:
    """Validate a request body; raises `RequestError` (400) naming what is wrong."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RequestError(400, f"the request body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "the request body must be a JSON object")
    messages = _messages(body.get("messages"), limits)
    tools = _tools(body.get("tools"), limits)
    tools = _apply_tool_choice(body.get("tool_choice"), tools)
    if body.get("n", 1) not in (1, None):
        raise RequestError(400, "n must be 1: the proxy returns one supervised choice", param="n")
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is None:
        max_tokens = min(defaults.max_new_tokens, limits.max_tokens)
    if not _is_int(max_tokens) or not 1 <= max_tokens <= limits.max_tokens:
        raise RequestError(
            400,
            f"max_tokens must be an integer in [1, {limits.max_tokens}] (limits.max_tokens)",
            param="max_tokens",
        )
    temperature = _number(body, "temperature", defaults.temperature, 0, 2)
    top_p = _number(body, "top_p", defaults.top_p, 0, 1)
    if top_p == 0:
        raise RequestError(400, "top_p must be in (0, 1]", param="top_p")
    stop = body.get("stop")
    if stop is None:
        stop = list(defaults.stop)
    elif isinstance(stop, str):
        stop = [stop]
    elif not (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)):
        raise RequestError(400, "stop must be a string or a list of at most 4 strings", param="stop")
    seed = body.get("seed")
    if seed is not None and not _is_int(seed):
        raise RequestError(400, "seed must be an integer", param="seed")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(400, "stream must be true or false", param="stream")
    sampling = SamplingParams(max_tokens, temperature, top_p, defaults.top_k, stop)
    model = body.get("model")
    return ChatRequest(messages, tools, sampling, stream, seed, model if isinstance(model, str) else "")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _number(body: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    x = body.get(name)
    if x is None:
        return default
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or not lo <= x <= hi:
        raise RequestError(400, f"{name} must be a number in [{lo:g}, {hi:g}]", param=name)
    return float(x)


def _messages(raw: Any, limits: Limits) -> list[Message]:
    if not isinstance(raw, list) or not raw:
        raise RequestError(400, "messages must be a non-empty list", param="messages")
    if len(raw) > limits.max_messages:
        raise RequestError(
            400,
            f"{len(raw)} messages is more than the proxy accepts ({limits.max_messages}, limits.max_messages)",
            param="messages",
            code="too_many_messages",
        )
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise RequestError(400, f"{where} must be an object with a role in {sorted(ROLES)}", param=where)
        content = m.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
                raise RequestError(400, f"{where}.content: only text parts are supported", param=where)
            content = "".join(str(p.get("text", "")) for p in content)
        elif content is not None and not isinstance(content, str):
            raise RequestError(
                400, f"{where}.content must be a string, a list of text parts or null", param=where
            )
        try:
            calls = [ToolCall.from_openai(c) for c in m.get("tool_calls") or []]
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            raise RequestError(400, f"{where}.tool_calls is malformed ({e})", param=where) from None
        role = "system" if m["role"] == "developer" else m["role"]
        tool_call_id = m.get("tool_call_id")
        out.append(
            Message(role, content, calls or None, tool_call_id if isinstance(tool_call_id, str) else None)
        )
    return out


def _tools(raw: Any, limits: Limits) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise RequestError(400, "tools must be a list of function schemas", param="tools")
    if len(raw) > limits.max_tools:
        raise RequestError(
            400,
            f"{len(raw)} tools is more than the proxy accepts ({limits.max_tools}, limits.max_tools)",
            param="tools",
        )
    size = len(json.dumps(raw))
    if size > limits.max_tools_bytes:
        raise RequestError(
            400,
            f"the tool schemas take {size} bytes, more than the proxy accepts "
            f"({limits.max_tools_bytes}, limits.max_tools_bytes)",
            param="tools",
        )
    for i, t in enumerate(raw):
        fn = t.get("function") if isinstance(t, dict) else None
        if (
            not isinstance(fn, dict)
            or not isinstance(fn.get("name"), str)
            or t.get("type", "function") != "function"
        ):
            raise RequestError(
                400, f"tools[{i}] must be {{'type': 'function', 'function': {{'name': ...}}}}", param="tools"
            )
    return raw


def _apply_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """`none` offers no tools; a named function offers only that one; `auto`/`required` all of them.

    (`OpenAIBackend` sends no `tool_choice` upstream, so `required` cannot force a call.)
    """
    if choice is None or choice in ("auto", "required"):
        return tools
    if choice == "none":
        return []
    name = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    if not isinstance(name, str):
        raise RequestError(
            400,
            "tool_choice must be 'auto', 'none', 'required' or {'type': 'function', 'function': {'name': ...}}",
            param="tool_choice",
        )
    chosen = [t for t in tools if t["function"]["name"] == name]
    if not chosen:
        raise RequestError(400, f"tool_choice names {name!r}, which is not in tools", param="tool_choice")
    return chosen


# --------------------------------------------------------------------------- responses


def assistant_message(c: Completion) -> tuple[Message, str]:
    """The approved completion as an assistant `Message` (native tool calls) and its finish reason."""
    assert c.action is not None
    if c.action.is_reply:
        finish = "length" if c.finish_reason == "length" else "stop"
        return Message("assistant", content=c.action.content), finish
    call = ToolCall(c.action.name, dict(c.action.kwargs), f"call_{uuid.uuid4().hex[:24]}")
    return Message("assistant", content=None, tool_calls=[call]), "tool_calls"


def completion_body(
    rid: str,
    created: int,
    model: str,
    message: Message,
    finish: str,
    usage: dict[str, int],
    summary: dict[str, Any],
) -> dict[str, Any]:
    msg = message.to_openai()
    msg.setdefault("refusal", None)
    return {
        "id": rid,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": msg, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
        "supervision": summary,
    }


def stream_events(
    rid: str,
    created: int,
    model: str,
    message: Message,
    finish: str,
    usage: dict[str, int],
    summary: dict[str, Any],
    chunk_chars: int = 64,
) -> Iterator[bytes]:
    """Server-sent events of an already approved message: role, content pieces or the tool
    call, then the finish reason (with usage and the supervision summary), then `[DONE]`."""

    def event(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> bytes:
        chunk = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
            **extra,
        }
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"

    yield event({"role": "assistant", "content": ""})
    if message.tool_calls:
        calls = [{"index": k, **tc.to_openai()} for k, tc in enumerate(message.tool_calls)]
        yield event({"tool_calls": calls})
    text = message.content or ""
    for i in range(0, len(text), chunk_chars):
        yield event({"content": text[i : i + chunk_chars]})
    yield event({}, finish, usage=usage, supervision=summary)
    yield b"data: [DONE]\n\n"


def summary_header(summary: dict[str, Any]) -> str:
    """The supervision summary in one header value, e.g.
    `proposals=2; verdicts=revise,approve; revisions=1; fallback=none`."""
    verdicts = ",".join(summary["verdicts"]) or "none"
    return (
        f"proposals={summary['proposals']}; verdicts={verdicts}; revisions={summary['revisions']}; "
        f"fallback={summary['fallback'] or 'none'}"
    )
