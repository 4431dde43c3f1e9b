"""Chat rendering for local models: messages -> template dicts, and the prefix-preservation check.

The KV cache of `TransformersBackend` relies on the chat template being *prefix-preserving*:
the prompt rendered for turn n, plus the assistant text the model generated, plus its
end-of-turn token, must be a prefix of the prompt rendered for turn n+1. Templates that
rewrite history (strip reasoning, merge messages, inject dates) break this; for those the
backend falls back to `CHATML_TEMPLATE`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lightning_asym.backends.toolcalls import format_action, tools_prompt
from lightning_asym.types import Action, Message

log = logging.getLogger(__name__)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'tool' %}"
    "{{ '<|im_start|>tool\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""ChatML for system/user/assistant/tool roles; one block per message, so it is prefix-preserving."""

TOOL_RESPONSE_OPEN = "<tool_response>"
TOOL_RESPONSE_CLOSE = "</tool_response>"

RenderFn = Callable[[Sequence[dict[str, str]], bool], str]


def chatml_template(start: str = "<|im_start|>", end: str = "<|im_end|>") -> str:
    """`CHATML_TEMPLATE` with other turn markers (for tokenizers without the ChatML tokens)."""
    return CHATML_TEMPLATE.replace("<|im_start|>", start).replace("<|im_end|>", end)


def template_handles_tool_role(template: str | None, render: RenderFn) -> bool:
    """True if the template names the tool role itself and renders a tool message's content.

    Generic templates (such as SmolLM2's) print any role name verbatim; a model trained on
    them has never seen a `tool` turn, so those are treated as not supporting it.
    """
    if not template or "tool" not in template:
        return False
    probe = "PROBE-TOOL-RESULT-7731"
    try:
        text = render([{"role": "user", "content": "q"}, {"role": "tool", "content": probe}], False)
    except Exception:  # noqa: BLE001 - any template error means "not supported"
        return False
    return probe in text


def to_template_messages(
    messages: Sequence[Message], tools: list[dict[str, Any]] | None, tool_role: str, tools_first: bool = False
) -> list[dict[str, str]]:
    """Plain `{"role", "content"}` dicts for the chat template.

    Tool schemas go into the system message as `tools_prompt(tools)`, after its text, or before
    it with `tools_first` (then episodes with the same tools but different system prompts share
    a longer token prefix, which the backend encodes once); a system message is created if
    there is none. Assistant tool calls render as their raw text if kept, else
    as `format_action`. Tool results use role `tool` if `tool_role == "tool"`, else become
    user messages wrapped in `<tool_response>` tags (the Hermes/Qwen convention).
    """
    out: list[dict[str, str]] = []
    for m in messages:
        if m.role == "assistant":
            content = m.content
            if not content and m.tool_calls:
                content = "\n".join(format_action(Action(tc.name, dict(tc.arguments))) for tc in m.tool_calls)
            out.append({"role": "assistant", "content": content or ""})
        elif m.role == "tool":
            if tool_role == "tool":
                out.append({"role": "tool", "content": m.content or ""})
            else:
                body = f"{TOOL_RESPONSE_OPEN}\n{m.content or ''}\n{TOOL_RESPONSE_CLOSE}"
                out.append({"role": "user", "content": body})
        else:
            out.append({"role": m.role, "content": m.content or ""})
    extra = tools_prompt(tools or [])
    if extra:
        if out and out[0]["role"] == "system":
            sys = out[0]["content"]
            both = f"{extra}\n\n{sys}" if tools_first else f"{sys}\n\n{extra}"
            out[0] = {"role": "system", "content": both if sys else extra}
        else:
            out.insert(0, {"role": "system", "content": extra})
    return out


PROBE_CONVERSATION: list[Message] = [
    Message("system", "You are a careful assistant.\nBe brief."),
    Message("user", "Find me a hotel in Paris."),
    Message("assistant", "Sure. Which dates?"),
    Message("user", "  May 3 to 5 \n"),
    Message("assistant", '<tool_call>\n{"name": "search", "arguments": {"city": "Paris"}}\n</tool_call>'),
    Message("tool", '{"results": ["Hotel A", "Hotel B"]}', tool_call_id="call_0"),
    Message("assistant", "I found Hotel A and Hotel B."),
    Message("user", "Thanks!"),
    Message("assistant", "You're welcome."),
]
"""A conversation with every role, used to test a template for prefix preservation."""

MessagesRender = Callable[[Sequence[Message], bool], str]


def check_prefix_preserving(
    render: MessagesRender, end_of_turn: Sequence[str], probe: Sequence[Message] = PROBE_CONVERSATION
) -> tuple[str | None, str]:
    """Check that generating turn by turn yields the same text as rendering the whole conversation.

    For every assistant message j of `probe`: render(probe[:j], gen=True) + content_j + eot
    must be a prefix of the generation prompt of the next assistant turn (or of the full
    rendering after the last one). Tries each end-of-turn string in order and returns the
    first that works, with "" as reason; or `(None, reason)`.
    """
    reasons = []
    for eot in end_of_turn:
        reason = _check_one(render, eot, probe)
        if reason is None:
            return eot, ""
        reasons.append(f"with end-of-turn {eot!r}: {reason}")
    return None, "; ".join(reasons) or "no end-of-turn token"


def _check_one(render: MessagesRender, eot: str, probe: Sequence[Message]) -> str | None:
    try:
        asst = [j for j, m in enumerate(probe) if m.role == "assistant"]
        for a, j in enumerate(asst):
            seen = render(probe[:j], True) + (probe[j].content or "") + eot
            nxt = asst[a + 1] if a + 1 < len(asst) else None
            later = render(probe[:nxt], True) if nxt is not None else render(probe, False)
            if not later.startswith(seen):
                return f"turn {a + 1}: the next prompt does not start with prompt + reply + end-of-turn"
    except Exception as e:  # noqa: BLE001 - a template that raises on the probe is unusable
        return f"rendering raised {type(e).__name__}: {e}"
    return None


PROBE_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "probe_lookup_4417",
            "description": "Look something up.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]},
        },
    }
]
"""A tool schema used to test whether a chat template renders `tools` itself."""

ApplyFn = Callable[[str, Sequence[dict[str, str]], bool, "list[dict[str, Any]] | None"], str]
"""`(template, messages, add_generation_prompt, tools) -> text`: the tokenizer's `apply_chat_template`."""


def template_accepts_tools(template: str, apply: ApplyFn) -> bool:
    """True if the template renders the `tools` it is given (its own tool-use format)."""
    if "tools" not in template:
        return False
    msgs = [{"role": "user", "content": "q"}]
    try:
        return "probe_lookup_4417" in apply(template, msgs, True, PROBE_TOOLS)
    except Exception:  # noqa: BLE001 - a template that raises on tools does not support them
        return False


@dataclass(frozen=True)
class ChatFormat:
    """How messages and tools become the text a local model reads.

    With `native_tools`, tool schemas go to the template's own `tools` argument (its tool-use
    prompt, as the model was trained); otherwise they are described in the system message by
    `tools_prompt` (our `<tool_call>` format). Either way an assistant message renders as the raw
    text the model generated, so the rendering stays prefix-preserving.
    """

    template: str
    tool_role: str
    end_of_turn: str = ""
    native_tools: bool = False
    is_fallback: bool = False
    tools_first: bool = True

    def render(
        self,
        apply: ApplyFn,
        messages: Sequence[Message],
        add_generation_prompt: bool,
        tools: list[dict] | None,
    ) -> str:
        native = self.native_tools and bool(tools)
        msgs = to_template_messages(messages, None if native else tools, self.tool_role, self.tools_first)
        return apply(self.template, msgs, add_generation_prompt, tools if native else None)


def choose_format(
    apply: ApplyFn,
    template: str | None,
    fallback: str,
    end_of_turn: Sequence[str],
    *,
    strict: bool = False,
    tool_role: str = "auto",
    native_tools: bool | None = None,
    tools_first: bool = True,
) -> ChatFormat:
    """The tokenizer's template if it is prefix-preserving, else `fallback` (ChatML); with its own
    tool format if it has one that also is (`native_tools`: None = when available, True = required,
    False = never)."""

    def with_template(t: str, is_fallback: bool) -> ChatFormat:
        role = tool_role
        if role == "auto":
            handles = template_handles_tool_role(t, lambda m, g: apply(t, m, g, None))
            role = "tool" if handles else "user"
        return ChatFormat(t, role, is_fallback=is_fallback, tools_first=tools_first)

    if template is None:
        log.info("the tokenizer has no chat template; using ChatML")
    fmt = with_template(template or fallback, False)
    eot, reason = check_prefix_preserving(lambda m, g: fmt.render(apply, m, g, None), end_of_turn)
    if eot is None:
        msg = f"the chat template is not prefix-preserving across turns ({reason})"
        if strict:
            raise ValueError(msg + "; pass strict_template=False to fall back to ChatML")
        log.warning("%s; falling back to a built-in ChatML template", msg)
        fmt = with_template(fallback, True)
        eot, reason = check_prefix_preserving(lambda m, g: fmt.render(apply, m, g, None), end_of_turn)
        if eot is None:
            raise ValueError(f"the fallback ChatML template is not prefix-preserving either: {reason}")
    fmt = replace(fmt, end_of_turn=eot)
    if native_tools is False:
        return fmt
    why = "the chat template does not render `tools`"
    if not fmt.is_fallback and template_accepts_tools(fmt.template, apply):
        native = replace(fmt, native_tools=True)
        ok, why = check_prefix_preserving(lambda m, g: native.render(apply, m, g, PROBE_TOOLS), [eot])
        if ok is not None:
            return native
        why = f"the chat template with tools is not prefix-preserving ({why})"
    if native_tools:
        raise ValueError(
            f"native_tools: true, but {why}; leave native_tools unset to use the <tool_call> prompt"
        )
    return fmt
