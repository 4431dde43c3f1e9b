"""The critic prompt's `earlier_actions` digest: the tool calls a `max_messages` window cuts."""

from __future__ import annotations

import json

from lightning_asym.review.format import render_earlier_actions, review_prompt
from lightning_asym.types import Action, Message, ToolCall


def conversation(turns: int) -> list[Message]:
    msgs = [Message("system", content="POLICY")]
    for t in range(turns):
        msgs.append(Message("user", content=f"u{t}"))
        calls = [ToolCall("find", {"t": t}), ToolCall("get", {"t": t, "x": "é"})] if t % 2 == 0 else None
        msgs.append(Message("assistant", content=None if calls else f"a{t}", tool_calls=calls))
        if calls:
            msgs += [Message("tool", content=f"result {t}.{i}", tool_call_id=f"c{i}") for i in range(2)]
    return msgs


def reference(messages: list[Message], keep: int) -> list[str]:
    """Every tool call of the non-system messages before the latest `keep`, in order."""
    body = [m for m in messages if m.role != "system"]
    out = []
    for m in body[: len(body) - keep] if len(body) > keep else []:
        for c in m.tool_calls or []:
            out.append(f"{c.name}({json.dumps(c.arguments, sort_keys=True)})")
    return out


def test_the_digest_lists_exactly_the_cut_calls():
    for turns in range(6):
        msgs = conversation(turns)
        for keep in (1, 2, 3, 5, 50):
            want = reference(msgs, keep)
            assert render_earlier_actions(msgs, keep) == ("\n".join(want) if want else "(none)")


def test_the_digest_only_grows_so_the_review_cache_keeps_it():
    """The digest sits before the window: as the conversation grows, the prompt up to the window
    is an extension of the previous one (what `review.scorer`'s per-episode cache reuses)."""
    heads = []
    for turns in range(1, 7):
        text = review_prompt(conversation(turns), Action.reply("x"), max_messages=2, earlier_actions=True)[
            1
        ].content
        heads.append(text.split("Conversation so far:")[0].rstrip("\n"))
    for before, after in zip(heads, heads[1:]):
        assert after.startswith(before)
    assert heads[-1].count("find(") == 3


def test_no_digest_without_the_option_or_without_a_window():
    msgs = conversation(4)
    assert "made earlier" not in review_prompt(msgs, None, max_messages=2)[1].content
    assert "made earlier" not in review_prompt(msgs, None, earlier_actions=True)[1].content
    part = review_prompt(msgs, None, "?", "SECRET", max_messages=2, earlier_actions=True)[1].content
    # order: what never changes, then the digest, then the window, then the proposal
    order = [part.index(s) for s in ("SECRET", "made earlier", "Conversation so far", "Proposed next action")]
    assert order == sorted(order)
