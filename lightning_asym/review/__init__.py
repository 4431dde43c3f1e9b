"""Reviewing critics: the request they see, the answer format, and the reviewers themselves."""

from lightning_asym.review.base import Reviewer, ReviewRequest
from lightning_asym.review.format import format_verdict, parse_verdict, review_prompt

__all__ = ["ReviewRequest", "Reviewer", "format_verdict", "parse_verdict", "review_prompt"]
