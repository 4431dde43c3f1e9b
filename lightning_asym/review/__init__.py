"""Reviewing critics: the request they see, the answer format, and the reviewers themselves."""

from lightning_asym.review.base import Reviewer, ReviewRequest
from lightning_asym.review.format import format_verdict, parse_verdict, review_prompt
from lightning_asym.review.generative import GenerativeCritic

__all__ = [
    "GenerativeCritic",
    "ReviewRequest",
    "Reviewer",
    "format_verdict",
    "parse_verdict",
    "review_prompt",
]
