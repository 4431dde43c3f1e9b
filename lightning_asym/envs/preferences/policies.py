"""Scripted agents for the preferences domain: a competent expert and a random baseline.

Both are `ScriptedPolicy` callables, `policy(messages, task, rng) -> text`, for
`ScriptedBackend(policy=ExpertPolicy())`. Neither reads the task: they act only on the
conversation, as a model would (the expert may use the domain's public hint tables).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_asym.backends.toolcalls import format_action, parse_action
from lightning_asym.envs.preferences.domain import ASPECT_NAMES, detect_aspects, matches
from lightning_asym.envs.preferences.hints import decode_hints
from lightning_asym.envs.preferences.user import DONE_RES
from lightning_asym.types import Action, Message, Task

_ASPECTS_RE = re.compile(r"Aspects to plan: ([^.\n]+)")
_RECOMMENDED_RE = re.compile(r"^Recommended \S+ for the (\w+)\.")

QUESTIONS = (
    "What matters to you about the {aspect}?",
    "Could you tell me what you'd like for the {aspect}?",
    "Is there anything you care about for the {aspect}?",
)


@dataclass
class ConversationState:
    """What an agent can know from the conversation alone."""

    aspects: list[str] = field(default_factory=list)
    preferences: dict[str, dict[str, str]] = field(default_factory=dict)
    exhausted: set[str] = field(default_factory=set)
    options: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    recommended: set[str] = field(default_factory=set)


def read_preferences(messages: Sequence[Message]) -> ConversationState:
    """Aspects to plan, decoded preferences, exhausted aspects, search results, recommendations."""
    state = ConversationState()
    asked: list[str] = []  # the aspects the latest agent reply talked about
    for m in messages:
        text = m.content or ""
        if m.role == "system" and not state.aspects:
            found = _ASPECTS_RE.search(text)
            if found:
                names = [a.strip().lower() for a in found.group(1).split(",")]
                state.aspects = [a for a in names if a in ASPECT_NAMES]
        elif m.role == "assistant":
            action, _ = parse_action(text)
            is_reply = not m.tool_calls and action is not None and action.is_reply
            asked = detect_aspects(text) if is_reply else []
        elif m.role == "user":
            if not state.aspects:  # no system policy: the greeting names the aspects
                state.aspects = detect_aspects(text)
            hints = decode_hints(text)
            for aspect, attr, value in hints:
                state.preferences.setdefault(aspect, {})[attr] = value
            for pattern in DONE_RES:
                state.exhausted.update(a for a in pattern.findall(text))
            # Asked about an aspect and got no new hint: a user in other words (an LLM user)
            # has nothing more to add, so do not ask forever.
            hinted = {h[0] for h in hints}
            state.exhausted.update(a for a in asked[:1] if a not in hinted)
            asked = []
        elif m.role == "tool":
            _read_tool(text, state)
    return state


def _read_tool(text: str, state: ConversationState) -> None:
    done = _RECOMMENDED_RE.match(text)
    if done:
        state.recommended.add(done.group(1))
        return
    try:
        payload = json.loads(text)
    except json.JSONDecodeError:
        return  # an error or some other observation
    if isinstance(payload, dict) and isinstance(payload.get("options"), list):
        state.options[str(payload.get("aspect"))] = payload["options"]


def best_option(options: list[dict[str, Any]], prefs: dict[str, str]) -> str:
    """The id of the cheapest option meeting every known preference (cheapest overall if none)."""
    fitting = [o for o in options if matches(o, prefs)] or options
    return min(fitting, key=lambda o: o.get("price", 0))["id"]


class ExpertPolicy:
    """Asks about each aspect until the user has nothing more to add, then searches and
    recommends the cheapest option meeting every decoded preference.

    `choose="random"` keeps the protocol (ask, search, recommend a listed id) but recommends a
    random option: a demonstrator that teaches the format of the job and leaves the decision
    for reinforcement learning to find.
    """

    def __init__(self, choose: str = "best") -> None:
        if choose not in ("best", "random"):
            raise ValueError(f"ExpertPolicy choose must be 'best' or 'random', got {choose!r}")
        self.choose = choose

    def __call__(self, messages: Sequence[Message], task: Task | None, rng: random.Random) -> str:
        state = read_preferences(messages)
        for aspect in state.aspects:
            if aspect in state.recommended:
                continue
            if aspect not in state.exhausted:
                return rng.choice(QUESTIONS).format(aspect=aspect)
            if aspect not in state.options:
                return format_action(Action("search", {"aspect": aspect}))
            if self.choose == "random":
                option_id = rng.choice(state.options[aspect])["id"]
            else:
                option_id = best_option(state.options[aspect], state.preferences.get(aspect, {}))
            return format_action(Action("recommend", {"aspect": aspect, "option_id": option_id}))
        if not state.aspects:
            return "What would you like help with today?"
        return "Everything is recommended. Thank you, goodbye!"


class RandomPolicy:
    """A weak baseline: searches each aspect and recommends a random option, never asking."""

    def __call__(self, messages: Sequence[Message], task: Task | None, rng: random.Random) -> str:
        state = read_preferences(messages)
        for aspect in state.aspects:
            if aspect in state.recommended:
                continue
            if aspect not in state.options:
                return format_action(Action("search", {"aspect": aspect}))
            option_id = rng.choice(state.options[aspect])["id"]
            return format_action(Action("recommend", {"aspect": aspect, "option_id": option_id}))
        return "Thank you, goodbye!"
