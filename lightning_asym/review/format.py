"""The generative critic's prompt and answer format, shared by the reviewer, the labeler and SFT.

The critic reads one prompt (a system message with the reviewing instruction and, when
configured, the policy; a user message with any privileged information, the transcript and
the proposed action) and answers in two lines::

    VERDICT: revise
    FEEDBACK: Authenticate the user with find_user_id_by_email before changing the order.

`parse_verdict` accepts the verdict word in any case, surrounding whitespace, markdown bold
and a missing FEEDBACK line; anything else is unparseable and gets the reviewer's default.
Training examples (`CriticExample`) are rendered by the same functions, so a fine-tuned
critic sees at test time exactly the prompt it was trained on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from lightning_asym.types import APPROVE, REVISE, Action, CriticExample, Message

INSTRUCTION = (
    "You review the next action of an agent (a reply to the user or a tool call) before it is executed. "
    "Check it against the policy and the conversation. If it follows the policy and moves the "
    "user's request forward, approve it. Otherwise ask for a revision and say in one sentence "
    "what is wrong and what to do instead. Answer in exactly two lines:\n"
    "VERDICT: approve or revise\n"
    "FEEDBACK: one sentence (empty when approving)"
)
VERDICTS = (APPROVE, REVISE)
_VERDICT_RE = re.compile(r"^\W*verdict\W*:\W*(approve|revise)\b", re.IGNORECASE | re.MULTILINE)
_FEEDBACK_RE = re.compile(r"^\W*feedback\W*:[ \t]*(.*)$", re.IGNORECASE | re.MULTILINE)


def render_transcript(messages: Sequence[Message], max_messages: int | None = None) -> str:
    """The conversation without its system message, one `role: text` line per message.

    Tool calls are written as `name({json args})`. With `max_messages`, only the latest
    messages are kept and an ellipsis line marks the cut.
    """
    body = [m for m in messages if m.role != "system"]
    cut = max_messages is not None and len(body) > max_messages
    if cut:
        body = body[len(body) - max_messages :]  # type: ignore[operator]
    lines = ["..."] if cut else []
    for m in body:
        text = (m.content or "").strip()
        calls = " ".join(render_action(Action(c.name, c.arguments)) for c in m.tool_calls or [])
        lines.append(f"{m.role}: {' '.join(x for x in (text, calls) if x)}")
    return "\n".join(lines)


def render_earlier_actions(messages: Sequence[Message], max_messages: int) -> str:
    """The agent's tool calls in the messages a `max_messages` window cuts, one per line.

    A window of the latest messages is cheap but forgets what the agent already did (did it
    authenticate the user? which order did it look up?). This digest keeps exactly that, at a
    few tokens a call, without the long tool results and chat around them. It only grows as
    the conversation goes on, so it stays in a review's KV cache (`review.scorer`).
    """
    body = [m for m in messages if m.role != "system"]
    cut = body[: max(len(body) - max_messages, 0)]
    calls = [render_action(Action(c.name, c.arguments)) for m in cut for c in m.tool_calls or []]
    return "\n".join(calls) if calls else "(none)"


def render_action(action: Action | None, text: str = "") -> str:
    """A proposed action as the critic reads it: a reply's text, or `name({json args})`."""
    if action is None:
        return f"(unparseable output) {text}".strip()
    if action.is_reply:
        return f"reply to the user: {action.content}"
    return f"{action.name}({json.dumps(action.kwargs, sort_keys=True)})"


def review_prompt(
    messages: Sequence[Message],
    action: Action | None,
    text: str = "",
    privileged: str | None = None,
    *,
    include_policy: bool = True,
    max_messages: int | None = None,
    earlier_actions: bool = False,
) -> list[Message]:
    """The critic's chat prompt for one proposed action.

    With `earlier_actions` and a `max_messages` window, the tool calls the window cuts are
    listed before it (`render_earlier_actions`).
    """
    policy = next((m.content for m in messages if m.role == "system" and m.content), "")
    system = INSTRUCTION + (f"\n\n{policy.strip()}" if include_policy and policy else "")
    # what never changes within an episode comes first, so a review's KV cache keeps it (`review.scorer`)
    parts = [f"What you know that the agent does not:\n{privileged.strip()}"] if privileged else []
    if earlier_actions and max_messages is not None:
        parts.append(f"Tool calls the agent made earlier:\n{render_earlier_actions(messages, max_messages)}")
    parts.append(f"Conversation so far:\n{render_transcript(messages, max_messages)}")
    parts.append(f"Proposed next action:\n{render_action(action, text)}")
    return [Message("system", content=system), Message("user", content="\n\n".join(parts))]


def example_prompt(example: CriticExample, **kwargs) -> list[Message]:
    """`review_prompt` of a training example (same options as at review time)."""
    return review_prompt(example.messages, example.action, example.text, example.privileged or None, **kwargs)


def format_verdict(verdict: str, feedback: str = "") -> str:
    """The answer the critic is trained to write."""
    if verdict not in VERDICTS:
        raise ValueError(f"verdict must be one of {VERDICTS}, got {verdict!r}")
    return f"VERDICT: {verdict}\nFEEDBACK: {' '.join(feedback.split())}"


def parse_verdict(text: str) -> tuple[str, str] | None:
    """`(verdict, feedback)` from a critic's answer, or None when there is no verdict line."""
    m = _VERDICT_RE.search(text.replace("*", ""))
    if m is None:
        return None
    fb = _FEEDBACK_RE.search(text.replace("*", ""), m.end())
    return m.group(1).lower(), (fb.group(1).strip() if fb else "")
