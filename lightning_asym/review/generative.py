"""`GenerativeCritic`: a language model reviews each proposed action and answers VERDICT/FEEDBACK.

The critic is any `ChatBackend`. Two ways to review (`mode`):

- `score` (the default for a local `TransformersBackend`): one batched forward pass reads
  P(revise) from the logits of the two verdict tokens at the verdict position
  (`review.verdict`, the definition `CriticSFT` validation and calibration use), the verdict is
  `revise` when P(revise) >= `revise_threshold`, and feedback is generated only for those rows.
  Each episode's prompt keeps its KV cache (`review.scorer`), so a review encodes only what
  was appended since the last one.
- `generate` (the only way for API-served critics): all requests of a step go through one
  batched `complete` call and the answer's VERDICT line is parsed; every prompt is encoded anew.

The prompt and the answer format are `review.format`'s, the same ones the labeler and critic
SFT use. A critic given as a directory reads `review_config.json` beside its weights
(`review.settings`): the prompt options it was trained with and its calibrated threshold.

Prompt budget: a review prompt holds the instruction and the retail policy (about 850
SmolLM2 tokens), then the whole transcript. Over every review of the noisy oracle on the retail
test split (error rate 0.15), prompts have a median of about 1,900 SmolLM2 tokens, a 90th
percentile of 4,300 and a maximum of 12,300: 1% go past SmolLM2's 8,192. Nothing is truncated:
a prompt that fills the context gets the `default_verdict`, counted as unparsed. `max_messages`
(keep the latest messages only) bounds the prompt: 24 messages keep retail prompts under 5,900
tokens, 8 under 3,400.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

from lightning_asym.backends.base import ChatBackend, SamplingParams
from lightning_asym.review.base import ReviewRequest
from lightning_asym.review.format import VERDICTS, format_verdict, parse_verdict, review_prompt
from lightning_asym.review.settings import REVIEW_CONFIG, read_review_config
from lightning_asym.types import APPROVE, REVISE, Message, Review, ReviewExample

log = logging.getLogger(__name__)

DEFAULT_SAMPLING = SamplingParams(max_new_tokens=48, temperature=0.0, stop=["\n\n"])
"""Greedy, two short lines: the answer ends at a blank line, the end of the turn or 48 tokens."""

MODEL_SHORTCUTS = ("tiny", "smollm2")
MODES = ("score", "generate")
BUILTIN = {
    "include_policy": True,
    "max_messages": None,
    "earlier_actions": False,
    "few_shot": False,
    "privileged": True,
    "revise_threshold": 0.5,
}
"""Defaults of the settings a critic directory's `review_config.json` may set."""


def example_turns(examples: Sequence[ReviewExample]) -> list[Message]:
    """Worked examples as chat turns: each one's review request (the user message of
    `review_prompt`, without the system prompt) and the ideal answer (`format_verdict`)."""
    return [
        turn
        for ex in examples
        for turn in (
            review_prompt(list(ex.messages), ex.action)[-1],
            Message("assistant", content=format_verdict(ex.verdict, ex.feedback)),
        )
    ]


def _env_examples(name: str, key: str) -> tuple[ReviewExample, ...]:
    """The worked examples of the registered env `name` (built with its defaults)."""
    import lightning_asym.envs  # noqa: F401  (registers the built-in envs)
    from lightning_asym.envs.base import make_env, registered_envs

    if name not in registered_envs():
        raise ValueError(f"{key}: no env named {name!r}; registered envs: {registered_envs()}")
    return tuple(make_env(name).review_examples())


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
        sampling: how the critic writes feedback, or its whole answer in `generate` mode
            (default: greedy, at most 48 new tokens, stop at a blank line).
        mode: `"score"` reads P(revise) from the verdict logits (local transformers critics only)
            and writes feedback for revise verdicts only; `"generate"` writes and parses the whole
            answer. Default: `score` for a `TransformersBackend`, `generate` otherwise.
        revise_threshold: in `score` mode, revise when P(revise) >= this.
        include_policy: put the domain policy (the conversation's system message) in the
            critic's system prompt; False gives a shorter prompt with the instruction only.
        max_messages: keep only the latest messages of the transcript (`"all"`: every one). Bounds
            the prompt of a local model with a small context (see the module docstring); a
            sliding window re-encodes the transcript at each review (see `review.scorer`).
        earlier_actions: with `max_messages`, list the agent's tool calls that the window cuts
            before it (`review.format.render_earlier_actions`): what the agent already did, in a
            few tokens a call.
        few_shot: put worked examples (usually one revise, one approve) as earlier chat turns
            between the system prompt and the request. Small instruct models that ignore the
            format zero-shot then answer in it (SmolLM2-135M: 0 of 12 answers parsed without,
            6 of 6 with). Leave it off for a critic fine-tuned on `example_prompt`, which was
            trained without examples. The examples are `examples` if given, else the reviewed
            env's (`ReviewRequest.examples`, which the rollout engine fills from
            `MultiTurnEnv.review_examples()`); with none, the critic warns once and reviews zero-shot.
        examples: the worked examples of `few_shot`, overriding the env's: `ReviewExample`s, or the
            name of a registered env (`"retail"`) whose `review_examples()` to use, for callers
            that know no env (`lightning-asym serve`, `Supervisor`). Unused when `few_shot` is off.
        privileged: show the critic the request's privileged text when supervision passes it
            (`supervision.privileged`); False keeps it out of the prompt.
        default_verdict: the verdict of an answer without a parseable VERDICT line (or a prompt
            that does not fit the context), `"approve"` (an unsure critic lets the action through)
            or `"revise"`.
        max_feedback_chars: feedback longer than this is cut before it reaches the actor.
        seed: base of each review's sampling seed (only matters when sampling is not greedy).
        dtype: weights dtype of a critic given by name or directory (default: bfloat16 where the
            hardware computes it natively, a GPU or a CPU with AVX512-BF16 or AMX, where it is 1.73x
            faster than float32; else float32, since an AVX2-only CPU emulates bfloat16 7x slower:
            `backends.hardware.fast_dtype`); set a `TransformersBackend`'s own `dtype` instead.
        quantize: `"int8"`: dynamically quantized int8 linears for a critic given by name or
            directory (`backends.quant`: 1.8x faster per review on CPUs, but scores move: the
            fine-tuned SmolLM2 critic's verdicts agreed with float32 on only 80 % of recorded
            reviews, so check `tools/bench_review.py --quantize int8` before using it).
        cache_size: in `score` mode, how many episodes keep their prompt's KV cache (at least
            the episodes reviewed together; the engine releases finished ones).

    `include_policy`, `max_messages`, `earlier_actions`, `few_shot`, `privileged` and `revise_threshold` left unset
    (None) take the values of `<dir>/review_config.json` when `backend` is a directory that has
    one, else the defaults in `BUILTIN`; a value given here wins over the file.

    Counts since construction: `num_reviews`, `num_unparsed`, `num_revise` and `num_tokens`
    (generated tokens; a scored verdict counts as one); `stats()` gives them with the rates.
    """

    def __init__(
        self,
        backend: ChatBackend | str,
        sampling: SamplingParams | None = None,
        mode: Literal["score", "generate"] | None = None,
        revise_threshold: float | None = None,
        include_policy: bool | None = None,
        max_messages: int | Literal["all"] | None = None,
        earlier_actions: bool | None = None,
        few_shot: bool | None = None,
        privileged: bool | None = None,
        default_verdict: str = APPROVE,
        max_feedback_chars: int = 300,
        seed: int = 0,
        dtype: str | None = None,
        quantize: str | None = None,
        cache_size: int = 64,
        examples: Sequence[ReviewExample] | str | None = None,
    ) -> None:
        key = "model.reviewer.init_args"
        if default_verdict not in VERDICTS:
            raise ValueError(f"{key}.default_verdict must be one of {VERDICTS}, got {default_verdict!r}")
        if (
            max_messages is not None
            and max_messages != "all"
            and (not isinstance(max_messages, int) or max_messages < 1)
        ):
            raise ValueError(
                f"{key}.max_messages must be >= 1, 'all' or null (the critic's own), got {max_messages}"
            )
        if max_feedback_chars < 1:
            raise ValueError(f"{key}.max_feedback_chars must be >= 1, got {max_feedback_chars}")
        if mode is not None and mode not in MODES:
            raise ValueError(f"{key}.mode must be one of {MODES} or null, got {mode!r}")
        if revise_threshold is not None and not 0.0 <= revise_threshold <= 1.0:
            raise ValueError(f"{key}.revise_threshold must be in [0, 1], got {revise_threshold}")
        saved: dict[str, Any] = {}
        if isinstance(backend, str):
            from lightning_asym.backends.hardware import fast_dtype
            from lightning_asym.backends.hf import TransformersBackend

            if Path(backend).expanduser().is_dir():
                saved = read_review_config(backend)
            backend = TransformersBackend(
                model=backend,
                dtype=(dtype or "float32") if quantize else (dtype or fast_dtype()),
                quantize=quantize,
            )
        elif dtype is not None or quantize is not None:
            raise ValueError(
                f"{key}.dtype and {key}.quantize apply to a critic given by name or directory; set them "
                f"in {key}.backend.init_args instead"
            )
        if not isinstance(backend, ChatBackend):
            raise TypeError(
                f"{key}.backend must be a ChatBackend (class_path/init_args) or a "
                f"model name ({', '.join(MODEL_SHORTCUTS)} or a directory), got {type(backend).__name__}"
            )
        given = dict(
            include_policy=include_policy,
            max_messages=max_messages,
            earlier_actions=earlier_actions,
            few_shot=few_shot,
            privileged=privileged,
            revise_threshold=revise_threshold,
        )
        settings = {k: v if v is not None else saved.get(k, BUILTIN[k]) for k, v in given.items()}
        self.settings_from_file = {k: saved[k] for k in saved if given[k] is None}
        self.backend = backend
        self.sampling = sampling or DEFAULT_SAMPLING
        self.include_policy: bool = settings["include_policy"]
        self.max_messages: int | None = (
            None if settings["max_messages"] == "all" else settings["max_messages"]
        )
        self.earlier_actions: bool = settings["earlier_actions"]
        self.few_shot: bool = settings["few_shot"]
        self.privileged: bool = settings["privileged"]
        self.revise_threshold: float = settings["revise_threshold"]
        self.default_verdict = default_verdict
        self.max_feedback_chars = max_feedback_chars
        self.seed = seed
        self._warn_privileged = saved.get("privileged") is True and privileged is None
        # a TransformersBackend instance implies its module was imported: no import for API critics
        hf = sys.modules.get("lightning_asym.backends.hf")
        local = hf is not None and isinstance(backend, hf.TransformersBackend)
        if mode == "score" and not local:
            raise ValueError(
                f"{key}.mode 'score' needs a local TransformersBackend critic (it reads the verdict "
                f"logits); {type(backend).__name__} can only generate: set mode: generate"
            )
        self.mode: str = mode or ("score" if local else "generate")
        self.scorer = None
        if self.mode == "score":
            from lightning_asym.review.scorer import VerdictScorer

            b: Any = backend
            self.scorer = VerdictScorer(
                b.model,
                b.tokenizer,
                b.render,
                b.end_of_turn,
                b.eos_ids,
                cache_size=cache_size,
                max_context=b.max_context,
            )
        if isinstance(examples, str):
            examples = _env_examples(examples, f"{key}.examples")
        self._own_examples = None if examples is None else example_turns(examples)
        # the rendered turns of the last env examples seen: an engine passes one tuple per env
        self._env_examples: tuple[Sequence[ReviewExample], list[Message]] = ((), [])
        self._warn_no_examples = True
        self.num_reviews = 0
        self.num_unparsed = 0
        self.num_revise = 0
        self.num_tokens = 0

    def prompt(self, request: ReviewRequest) -> list[Message]:
        """The chat prompt the critic model reads for one request."""
        if self._warn_privileged and not request.privileged:
            log.warning(
                "this critic was trained with privileged information (%s says privileged: true) but the "
                "review request has none; set supervision.privileged: true",
                REVIEW_CONFIG,
            )
            self._warn_privileged = False
        prompt = review_prompt(
            request.messages,
            request.action,
            request.text,
            request.privileged if self.privileged else None,
            include_policy=self.include_policy,
            max_messages=self.max_messages,
            earlier_actions=self.earlier_actions,
        )
        if not self.few_shot:
            return prompt
        return [prompt[0], *self._example_turns(request), *prompt[1:]]

    def _example_turns(self, request: ReviewRequest) -> list[Message]:
        """The few-shot turns for this request: the critic's own examples, else the env's."""
        turns = self._own_examples
        if turns is None:
            seen, rendered = self._env_examples
            if request.examples is not seen:
                rendered = example_turns(request.examples)
                self._env_examples = (request.examples, rendered)
            turns = rendered
        if not turns and self._warn_no_examples:
            log.warning(
                "model.reviewer.init_args.few_shot is true but there are no worked examples: the env gives "
                "none (MultiTurnEnv.review_examples) and model.reviewer.init_args.examples is unset; "
                "reviewing without examples"
            )
            self._warn_no_examples = False
        return turns

    def setup_modules(self, setup: Callable[[Any], Any]) -> None:
        """Let a launcher wrap the critic model (`Supervisor`'s Fabric), if the backend is local."""
        set_up = getattr(self.backend, "setup_modules", None)
        if callable(set_up):
            set_up(setup)
            if self.scorer is not None:  # it scores with the model it was given: the wrapped one now
                self.scorer.model = self.backend.model

    def release(self, keys: Sequence[Hashable]) -> None:
        """Drop the prompt caches of these episodes (they ended)."""
        if self.scorer is not None:
            self.scorer.release(keys)

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        """One `Review` per request, in order, from one batched forward or backend call."""
        if not requests:
            return []
        prompts = [self.prompt(r) for r in requests]
        reviews = self._scored(requests, prompts) if self.scorer is not None else self._generated(prompts)
        self.num_reviews += len(reviews)
        self.num_unparsed += sum(not r.parsed for r in reviews)
        self.num_revise += sum(r.verdict == REVISE for r in reviews)
        self.num_tokens += sum(r.num_tokens for r in reviews)
        return reviews

    def _generated(self, prompts: list[list[Message]]) -> list[Review]:
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
        return [self._review(c.text, c.num_completion_tokens) for c in completions]

    def _scored(self, requests: Sequence[ReviewRequest], prompts: list[list[Message]]) -> list[Review]:
        assert self.scorer is not None
        scored = self.scorer.score(prompts, [r.key for r in requests])
        reviews: list[Review | None] = [None] * len(prompts)
        revise = []
        for i, s in enumerate(scored):
            if s.p_revise is None:  # the prompt does not fit the context
                reviews[i] = Review(self.default_verdict, "", parsed=False)
            elif s.p_revise >= self.revise_threshold:
                revise.append(i)
            else:
                reviews[i] = Review(APPROVE, "", score=s.p_revise, num_tokens=1)
        if revise:
            seeds = [review_seed(self.seed, prompts[i]) for i in revise]
            answers = self.scorer.feedback([scored[i] for i in revise], self.sampling, seeds)
            for i, (text, n) in zip(revise, answers):
                parsed = parse_verdict(text)
                feedback = self._clip(parsed[1]) if parsed else ""
                reviews[i] = Review(REVISE, feedback, score=scored[i].p_revise, num_tokens=1 + n)
        return reviews  # type: ignore[return-value]

    def _clip(self, feedback: str) -> str:
        return " ".join(feedback.split())[: self.max_feedback_chars].rstrip()

    def _review(self, text: str, num_tokens: int) -> Review:
        tokens = num_tokens or len(text.split())  # backends without a tokenizer report 0
        parsed = parse_verdict(text)
        if parsed is None:
            return Review(self.default_verdict, "", parsed=False, num_tokens=tokens)
        verdict, feedback = parsed
        return Review(verdict, self._clip(feedback), num_tokens=tokens)

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
