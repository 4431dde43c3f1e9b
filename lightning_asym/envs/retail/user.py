"""A deterministic scripted customer that follows a retail task's structured goal.

It implements the `UserSimulator` shape (`reset(task, seed) -> str`, `respond(agent_text)
-> str`) with keyword rules instead of a model: it identifies itself when asked, asks for
one intent at a time, says "yes" only to a confirmation that names the right order, items,
payment method or address, says "no" (and repeats its request) otherwise, and ends with
`###STOP###` when every intent is handled or the agent keeps missing the point.
"""

from __future__ import annotations

import random
import re
from typing import Any

from lightning_asym.envs.users import STOP
from lightning_asym.types import Task

_ID_WORDS = (
    "email",
    "zip code",
    "zipcode",
    "postal code",
    "verify",
    "authenticate",
    "identity",
    "identify",
    "your name",
    "full name",
    "first name",
    "last name",
)
_NOT_FOUND = (
    "not find",
    "couldn't find",
    "could not find",
    "not found",
    "unable to find",
    "no user",
    "no account",
    "doesn't match",
    "does not match",
    "unable to locate",
    "couldn't locate",
)
_CONFIRM_WORDS = (
    "confirm",
    "yes/no",
    "(yes",
    "yes or no",
    "shall i proceed",
    "should i proceed",
    "shall i go ahead",
    "should i go ahead",
    "like me to proceed",
    "want me to proceed",
    "like me to go ahead",
    "want me to go ahead",
    "proceed?",
    "go ahead?",
    "is that correct",
    "is this correct",
)
_DONE_WORDS = (
    "has been",
    "have been",
    "successfully",
    "is now",
    "are now",
    "done",
    "completed",
    "processed",
    "is requested",
    "cancelled",
    "canceled",
    "updated",
    "submitted",
    "placed",
)
_REFUSE_WORDS = ("cannot", "can't", "can not", "unable", "not able", "only pending", "not possible", "sorry")
_ORDER_RE = re.compile(r"#?w(\d{7})\b")
_YES = ("Yes, please go ahead.", "Yes, that's right, please do it.", "Yes, I confirm.")


def _norm(text: str) -> str:
    return " ".join((text or "").lower().replace(",", " ").split())


def has_word(text: str, word: str) -> bool:
    """`word` occurs in `text` (both lower-case) not glued to other letters or digits."""
    return (
        re.search(r"(?<![a-z0-9])" + re.escape(word.lower().replace(",", " ")) + r"(?![a-z0-9])", text)
        is not None
    )


def matches(text: str, intent: dict[str, Any]) -> bool:
    """Whether a normalized confirmation `text` names exactly what `intent` wants."""
    for group in intent["confirm"]:
        if not any(all(has_word(text, w) for w in alt) for alt in group):
            return False
    want = intent["order_id"].lstrip("#").lower()[1:] if intent["order_id"] else None
    return all(m == want for m in _ORDER_RE.findall(text))


class ScriptedRetailUser:
    """The retail customer as rules; deterministic given the task and seed."""

    def __init__(self, max_repeats: int = 3) -> None:
        self.max_repeats = max_repeats
        self.data: dict[str, Any] = {}

    # ------------------------------------------------------------------ protocol

    def reset(self, task: Task, seed: int = 0) -> str:
        self.data = task.data
        self.intents: list[dict[str, Any]] = list(task.data["intents"])
        self.rng = random.Random(f"retail-user:{task.id}:{seed}")
        self.k = 0
        self.identified = 0
        self.done = False
        self._new_intent(details_given=False)
        return self.intents[0]["opening"]

    def respond(self, agent_text: str) -> str:
        if self.done:
            return STOP
        t = _norm(agent_text)
        it = self.intents[self.k]
        if self._asks_identity(t):
            return self._identity()
        kind = it["kind"]
        if _any(t, _CONFIRM_WORDS):
            return self._on_confirmation(t, it)
        if not self.details_given and not self._answered(t, it):
            self.details_given = True
            return it["details"]
        if kind == "transfer":
            return self._repeat("Is there really nothing you can do? Please transfer me to a human agent.")
        if kind in ("order_total", "available_count", "refuse") or self.confirmed or _any(t, _DONE_WORDS):
            return self._advance()
        return self._repeat("As I said: " + it["details"])

    # ------------------------------------------------------------------ rules

    def _new_intent(self, details_given: bool) -> None:
        self.details_given = details_given
        self.confirmed = False
        self.repeats = 0

    def _asks_identity(self, t: str) -> bool:
        if self.identified == 0:
            return _any(t, _ID_WORDS)
        return self.identified < 3 and _any(t, _NOT_FOUND) and _any(t, ("email", "zip", "name"))

    def _identity(self) -> str:
        d = self.data
        self.identified += 1
        name_zip = f"my name is {d['first_name']} {d['last_name']} and my zip code is {d['zip']}."
        if d["auth"] == "email" and self.identified == 1:
            return f"Sure, my email is {d['email']}."
        if d["auth"] == "email":
            return f"Hmm, then try this: {name_zip[0].upper()}{name_zip[1:]}"
        return f"I don't remember my email, but {name_zip}"

    def _on_confirmation(self, t: str, it: dict[str, Any]) -> str:
        kind = it["kind"]
        if kind == "transfer":
            return self._repeat("No. " + it["details"] + " Can you transfer me to a human agent?")
        if kind in ("order_total", "available_count"):
            self.details_given = True
            return "Yes, please. " + it["details"]
        if matches(t, it):  # for a refusal the user wants the (impossible) cancel, so the order id suffices
            self.details_given = self.confirmed = True
            return self.rng.choice(_YES)
        return self._repeat("No, that's not what I want. " + it["details"])

    def _answered(self, t: str, it: dict[str, Any]) -> bool:
        """The agent already handled this intent before the user spelled it out."""
        if it["kind"] in ("order_total", "available_count"):
            return all(has_word(t, o) for o in it["outputs"])
        if it["kind"] == "refuse":
            return it["order_id"].lstrip("#").lower() in t and _any(t, _REFUSE_WORDS)
        return self.confirmed

    def _advance(self) -> str:
        self.k += 1
        if self.k >= len(self.intents):
            self.done = True
            return f"Great, thanks, that's everything I needed. {STOP}"
        self._new_intent(details_given=True)
        return f"Thanks! Another thing: {self.intents[self.k]['details']}"

    def _repeat(self, text: str) -> str:
        self.repeats += 1
        if self.repeats >= self.max_repeats:
            self.done = True
            return f"This is not going anywhere. Goodbye. {STOP}"
        return text


def _any(t: str, words: tuple[str, ...]) -> bool:
    return any(w in t for w in words)
