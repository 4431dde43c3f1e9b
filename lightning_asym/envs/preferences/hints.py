"""Indirect hints: how the simulated user voices each preference without naming its value.

`HINTS[aspect][attribute][value]` holds paraphrase templates; the seeded user picks one.
No template contains any attribute value of the domain (a test checks this), so an agent
has to understand the hint, not string-match the catalogue. Every template is unique and
no template contains another, so a hint decodes to exactly one preference.
"""

from __future__ import annotations

from lightning_asym.envs.preferences.hints_local import LOCAL_HINTS
from lightning_asym.envs.preferences.hints_travel import TRAVEL_HINTS

HINTS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {**TRAVEL_HINTS, **LOCAL_HINTS}
"""`HINTS[aspect][attribute][value]`: the paraphrase templates of each preferable value."""

HINT_INDEX: list[tuple[str, str, str, str]] = [
    (template, aspect, attr, value)
    for aspect, attrs in HINTS.items()
    for attr, values in attrs.items()
    for value, templates in values.items()
    for template in templates
]
"""Every `(template, aspect, attribute, value)`; an agent may use it to decode what it hears."""


def decode_hints(text: str) -> list[tuple[str, str, str]]:
    """The `(aspect, attribute, value)` preferences whose hint templates occur in `text`."""
    return [(aspect, attr, value) for template, aspect, attr, value in HINT_INDEX if template in text]


def preferable_attributes(aspect: str) -> list[str]:
    """The attributes of an aspect that a user can hold a preference about."""
    return list(HINTS[aspect])
