"""Reviewing critics: the request they see, the answer format, and the reviewers themselves."""

from lightning_asym.review.base import Reviewer, ReviewRequest, StatefulReviewer
from lightning_asym.review.format import format_verdict, parse_verdict, review_prompt
from lightning_asym.review.generative import GenerativeCritic
from lightning_asym.review.rules import RetailRuleCritic

__all__ = [
    "GenerativeCritic",
    "RetailRuleCritic",
    "ReviewRequest",
    "Reviewer",
    "StatefulReviewer",
    "format_verdict",
    "parse_verdict",
    "review_prompt",
]
