"""The scripted user of the preferences domain, shaped like UserBench's simulated user.

It reveals a hidden preference only when the agent's reply is about that preference's
aspect, one per reply and only as an indirect hint; after three off-topic replies in a row
it volunteers one; once an aspect is exhausted it says so. Deterministic given (task, seed).
"""

from __future__ import annotations

import random
import re

from lightning_asym.envs.preferences.domain import detect_aspects
from lightning_asym.envs.preferences.hints import HINTS
from lightning_asym.envs.users import STOP
from lightning_asym.types import Task

OFF_TOPIC_LIMIT = 3
"""Consecutive off-topic agent replies after which the user volunteers a preference."""

GREETINGS = (
    "Hi! I need some help with my plans. I'm looking for {items}.",
    "Hello there. Could you help me sort out {items}?",
    "Hey! I have to arrange {items}, and I'd love some help choosing.",
)
# Leads are whole sentences so that the hint after them is verbatim (agents may decode it).
LEADS = ("", "Hmm, good question. ", "Let me think. ", "Well, let me see. ", "Sure. ")
VOLUNTEER_LEADS = ("Oh, I should mention something. ", "One thing you should know. ", "Before I forget. ")
DONE = (
    "That's all I care about for the {aspect}.",
    "Nothing else matters to me about the {aspect}.",
    "I have no other wishes for the {aspect}.",
)
DONE_RES = [re.compile(re.escape(d).replace(r"\{aspect\}", r"(\w+)")) for d in DONE]
"""Regexes that find an exhausted aspect in a user message (for agents that read hints)."""
NUDGES = (
    "Sorry, I'm not sure how that helps. I still need help with {items}.",
    "Hmm, okay. But what about {items}?",
    "I'd really like to get {items} sorted out.",
)
NOTHING_LEFT = "I've told you everything I care about. Could you make your recommendations?"
FAREWELL_RE = re.compile(r"\b(?:goodbye|bye)\b", re.IGNORECASE)


def join_items(aspects: list[str]) -> str:
    """`"a flight, a hotel and a car"`."""
    items = [("an " if a[0] in "aeiou" else "a ") + a for a in aspects]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


class PreferenceUser:
    """The preferences domain's scripted `UserSimulator`."""

    def __init__(self, off_topic_limit: int = OFF_TOPIC_LIMIT) -> None:
        self.off_topic_limit = off_topic_limit
        self.aspects: list[str] = []
        self.pending: dict[str, list[tuple[str, str]]] = {}
        self.revealed: dict[str, list[tuple[str, str]]] = {}
        self.off_topic = 0
        self.rng = random.Random(0)

    def reset(self, task: Task, seed: int = 0) -> str:
        self.rng = random.Random(f"{task.id}/{seed}/user")
        self.aspects = list(task.data["aspects"])
        prefs = task.data["preferences"]
        self.pending = {}
        for aspect in self.aspects:
            order = list(prefs[aspect].items())
            self.rng.shuffle(order)  # which preference comes out first varies by seed
            self.pending[aspect] = order
        self.revealed = {a: [] for a in self.aspects}
        self.off_topic = 0
        return self.rng.choice(GREETINGS).format(items=join_items(self.aspects))

    def respond(self, agent_text: str) -> str:
        text = agent_text if isinstance(agent_text, str) else str(agent_text)
        topics = detect_aspects(text, self.aspects)
        if not topics and FAREWELL_RE.search(text):
            return f"Thanks for your help, goodbye! {STOP}"
        if topics:
            self.off_topic = 0
            for aspect in topics:
                if self.pending[aspect]:
                    return self.rng.choice(LEADS) + self._reveal(aspect)
            return " ".join(self.rng.choice(DONE).format(aspect=a) for a in topics)
        self.off_topic += 1
        if self.off_topic >= self.off_topic_limit:
            self.off_topic = 0
            left = [a for a in self.aspects if self.pending[a]]
            if left:
                return self.rng.choice(VOLUNTEER_LEADS) + self._reveal(left[0])
            return NOTHING_LEFT
        left = [a for a in self.aspects if self.pending[a]] or self.aspects
        return self.rng.choice(NUDGES).format(items=join_items(left))

    def _reveal(self, aspect: str) -> str:
        attr, value = self.pending[aspect].pop(0)
        self.revealed[aspect].append((attr, value))
        return self.rng.choice(HINTS[aspect][attr][value])
