"""Worked reviews of the preferences domain for a few-shot critic (`PreferencesEnv.review_examples`).

One proposal to revise (a recommendation before the user said anything about the aspect or the
options were searched) and one to approve (searching once the user said that is all they care
about), both under the domain's `POLICY`.
"""

from __future__ import annotations

from lightning_asym.types import APPROVE, REVISE, Action, Message, ReviewExample

_USER = Message("user", content="Hi! I need some help with my plans. I'm looking for a flight and a hotel.")

REVIEW_EXAMPLES: tuple[ReviewExample, ...] = (
    ReviewExample(
        (_USER,),
        Action("recommend", {"aspect": "hotel", "option_id": "H104"}),
        REVISE,
        "You do not know the user's hotel preferences yet: ask what matters to them about the hotel, "
        "then search the hotel options.",
    ),
    ReviewExample(
        (
            _USER,
            Message("assistant", content="Let's start with the hotel. What matters to you there?"),
            Message("user", content="I'd like to hear the waves from my room."),
            Message("assistant", content="Noted. Anything else about the hotel?"),
            Message("user", content="That's all I care about for the hotel."),
        ),
        Action("search", {"aspect": "hotel"}),
        APPROVE,
    ),
)
"""(transcript, proposed action, verdict, feedback): one revise, one approve."""
