"""Worked reviews of the retail domain for a few-shot critic (`RetailEnv.review_examples`).

One proposal to revise (a write before authentication, `policy.AUTHENTICATE_FIRST`) and one to
approve (the authentication lookup). Their text is what `GenerativeCritic` has always shown with
`few_shot: true`, so the prompt of a retail few-shot critic is unchanged; edit it and that prompt
changes too. The τ-bench retail adapter reuses them where its tools match (`envs.base.fits_tools`).
"""

from __future__ import annotations

from lightning_asym.types import APPROVE, REVISE, Action, Message, ReviewExample

_USER = Message("user", content="Hi, please cancel my order #W1234567, I no longer need it.")

REVIEW_EXAMPLES: tuple[ReviewExample, ...] = (
    ReviewExample(
        (_USER,),
        Action("cancel_pending_order", {"order_id": "#W1234567", "reason": "no longer needed"}),
        REVISE,
        "The user is not authenticated yet: find their user id by email first.",
    ),
    ReviewExample(
        (
            _USER,
            Message("assistant", content="Sure. Could you give me your email address?"),
            Message("user", content="It is ana.lee@example.com"),
        ),
        Action("find_user_id_by_email", {"email": "ana.lee@example.com"}),
        APPROVE,
    ),
)
"""(transcript, proposed action, verdict, feedback): one revise, one approve."""
