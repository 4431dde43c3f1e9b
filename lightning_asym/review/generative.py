"""`GenerativeCritic`: a language model reviews each proposed action and answers VERDICT/FEEDBACK.

The critic is any `ChatBackend`: a local `TransformersBackend` (all requests of a step go
through one batched `complete` call, and the shared system prompt with the policy is encoded
once) or an OpenAI-compatible endpoint, so a larger model can play critic. The prompt and the
answer format are `review.format`'s, the same ones the labeler and critic SFT use.

Prompt budget: a review prompt holds the instruction and the retail policy (about 850
SmolLM2 tokens), then the whole transcript. Over every review of the noisy oracle on the retail
test split (error rate 0.15), prompts have a median of about 1,900 SmolLM2 tokens, a 90th
percentile of 4,300 and a maximum of 12,300: 1% go past SmolLM2's 8,192. `TransformersBackend`
does not truncate: a prompt that fills `max_context` gets an empty completion, which counts as
unparseable and takes `default_verdict`. `max_messages` (keep the latest messages only) bounds
the prompt: 24 messages keep retail prompts under 5,900 tokens, 8 under 3,400.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.review.base import ReviewRequest
from lightning_asym.review.format import VERDICTS, format_verdict, parse_verdict, review_prompt
from lightning_asym.types import APPROVE, REVISE, Action, Message, Review

DEFAULT_SAMPLING = SamplingParams(max_new_tokens=48, temperature=0.0, stop=["\n\n"])
"""Greedy, two short lines: the answer ends at a blank line, the end of the turn or 48 tokens."""

MODEL_SHORTCUTS = ("tiny", "smollm2")

_EXAMPLE_USER = Message("user", content="Hi, please cancel my order #W1234567, I no longer need it.")
FEW_SHOT: tuple[tuple[list[Message], Action, str], ...] = (
    (
        [_EXAMPLE_USER],
        Action("cancel_pending_order", {"order_id": "#W1234567", "reason": "no longer needed"}),
        format_verdict(REVISE, "The user is not authenticated yet: find their user id by email first."),
    ),
    (
        [
            _EXAMPLE_USER,
            Message("assistant", content="Sure. Could you give me your email address?"),
            Message("user", content="It is ana.lee@example.com"),
        ],
        Action("find_user_id_by_email", {"email": "ana.lee@example.com"}),
        format_verdict(APPROVE),
    ),
)
"""Worked examples for `few_shot`: (transcript, proposed action, answer)."""


def review_seed(seed: int, prompt: Sequence[Message]) -> int:
    """A stable 31-bit sampling seed for one review, from the critic's seed and the prompt text.

    It depends on what is reviewed, not on the request's position in the batch or on how many
    reviews came before, so a trajectory does not change with the batch it ran in.
    """
    h = hashlib.sha256(str(seed).encode())
    for m in prompt:
        h.update(f"\x00{m.role}\x00{m.content or ''}".encode())
    return int.from_bytes(h.digest()[:4], "little") & 0x7FFFFFFF


class GenerativeCritic:
    """A reviewer that asks a chat model for `VERDICT: approve|revise` and one line of feedback.

    Args:
        backend: the critic's model: any `ChatBackend` (a `TransformersBackend`, an
            OpenAI-compatible backend, a scripted one in tests), or a string, `"tiny"`,
            `"smollm2"` or a local transformers directory, meaning `TransformersBackend(model=...)`.
        sampling: how the critic samples (default: greedy, at most 48 new tokens, stop at a
            blank line).
        include_policy: put the domain policy (the conversation's system message) in the
            critic's system prompt; False gives a shorter prompt with the instruction only.
        max_messages: keep only the latest messages of the transcript (None: all). Bounds the
            prompt of a local model with a small context (see the module docstring).
        default_verdict: the verdict of an answer without a parseable VERDICT line,
            `"approve"` (an unsure critic lets the action through) or `"revise"`.
        max_feedback_chars: feedback longer than this is cut before it reaches the actor.
        seed: base of each review's sampling seed (only matters when sampling is not greedy).
        few_shot: put worked examples (`FEW_SHOT`: one revise, one approve) as earlier chat turns
            between the system prompt and the request. Small instruct models that ignore the
            format zero-shot then answer in it (SmolLM2-135M: 0 of 12 answers parsed without,
            6 of 6 with). Leave it off for a critic fine-tuned on `example_prompt`, which was
            trained without examples.

    Counts since construction: `num_reviews`, `num_unparsed`, `num_revise` and `num_tokens`
    (generated tokens); `stats()` gives them with the rates.
    """

    def __init__(
        self,
        backend: ChatBackend | str,
        sampling: SamplingParams | None = None,
        include_policy: bool = True,
        max_messages: int | None = None,
        default_verdict: str = APPROVE,
        max_feedback_chars: int = 300,
        seed: int = 0,
        few_shot: bool = False,
    ) -> None:
        if default_verdict not in VERDICTS:
            raise ValueError(
                f"model.reviewer.init_args.default_verdict must be one of {VERDICTS}, got {default_verdict!r}"
            )
        if max_messages is not None and max_messages < 1:
            raise ValueError(
                f"model.reviewer.init_args.max_messages must be >= 1 or null (all), got {max_messages}"
            )
        if max_feedback_chars < 1:
            raise ValueError(
                f"model.reviewer.init_args.max_feedback_chars must be >= 1, got {max_feedback_chars}"
            )
        if isinstance(backend, str):
            from lightning_asym.backends.hf import TransformersBackend

            backend = TransformersBackend(model=backend)
        if not isinstance(backend, ChatBackend):
            raise TypeError(
                "model.reviewer.init_args.backend must be a ChatBackend (class_path/init_args) or a "
                f"model name ({', '.join(MODEL_SHORTCUTS)} or a directory), got {type(backend).__name__}"
            )
        self.backend = backend
        self.sampling = sampling or DEFAULT_SAMPLING
        self.include_policy = include_policy
        self.max_messages = max_messages
        self.default_verdict = default_verdict
        self.max_feedback_chars = max_feedback_chars
        self.seed = seed
        self.few_shot = few_shot
        self._examples = [
            turn
            for messages, action, answer in FEW_SHOT
            for turn in (review_prompt(messages, action)[-1], Message("assistant", content=answer))
        ]
        self.num_reviews = 0
        self.num_unparsed = 0
        self.num_revise = 0
        self.num_tokens = 0

    def prompt(self, request: ReviewRequest) -> list[Message]:
        """The chat prompt the critic model reads for one request."""
        prompt = review_prompt(
            request.messages,
            request.action,
            request.text,
            request.privileged,
            include_policy=self.include_policy,
            max_messages=self.max_messages,
        )
        return [prompt[0], *self._examples, *prompt[1:]] if self.few_shot else prompt

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        """One `Review` per request, in order, from one batched call of the backend."""
        if not requests:
            return []
        prompts = [self.prompt(r) for r in requests]
        completions = self.backend.complete(
            prompts,
            tools=None,
            sampling=self.sampling,
            keys=None,
            seeds=[review_seed(self.seed, p) for p in prompts],
        )
        if len(completions) != len(prompts):
            raise RuntimeError(
                f"{type(self.backend).__name__}.complete returned {len(completions)} completions "
                f"for {len(prompts)} review prompts"
            )
        # a backend that parses tool calls returns the answer as an Action too; the text is what counts
        reviews = [self._review(c.text, c.num_completion_tokens) for c in completions]
        self.num_reviews += len(reviews)
        self.num_unparsed += sum(not r.parsed for r in reviews)
        self.num_revise += sum(r.verdict == REVISE for r in reviews)
        self.num_tokens += sum(r.num_tokens for r in reviews)
        return reviews

    def _review(self, text: str, num_tokens: int) -> Review:
        tokens = num_tokens or len(text.split())  # backends without a tokenizer report 0
        parsed = parse_verdict(text)
        if parsed is None:
            return Review(self.default_verdict, "", parsed=False, num_tokens=tokens)
        verdict, feedback = parsed
        feedback = " ".join(feedback.split())[: self.max_feedback_chars].rstrip()
        return Review(verdict, feedback, num_tokens=tokens)

    def stats(self) -> dict[str, float]:
        """Counts since construction and the unparsed and revise rates (0 before any review)."""
        n = self.num_reviews
        return {
            "reviews": n,
            "unparsed": self.num_unparsed,
            "unparsed_rate": self.num_unparsed / n if n else 0.0,
            "revise": self.num_revise,
            "revise_rate": self.num_revise / n if n else 0.0,
            "tokens": self.num_tokens,
        }
