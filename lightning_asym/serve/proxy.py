"""`SupervisedProxy`: one HTTP request = one supervised turn, driven like `Supervisor.step`.

The upstream actor proposes, the reviewer reviews, and on `revise` the actor revises, all by
the rollout room's `supervise_step` (the same loop the engine and `Supervisor` run). This module
adds what a server needs around it: the conversation key, per-request timing and token counts
(thin wrappers around the actor and the reviewer), error classification, and the audit record.
`run` blocks; the app calls it in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.errors import EndpointError
from lightning_asym.review.base import Reviewer, ReviewRequest
from lightning_asym.rollout.supervision import SupervisionConfig, supervise_step
from lightning_asym.serve.metrics import ServeMetrics
from lightning_asym.serve.wire import ChatRequest, assistant_message
from lightning_asym.supervisor import Supervisor
from lightning_asym.types import Message, Proposal, Review, Task, Trajectory, Turn, to_dict

log = logging.getLogger(__name__)

KEY_HEADER = "x-conversation-id"
MAX_KEY_CHARS = 128

# outcome statuses and the HTTP status each is answered with
STATUS_HTTP = {
    "ok": 200,
    "fallback": 200,
    "malformed": 502,
    "upstream_error": 502,
    "upstream_timeout": 504,
    "reviewer_error": 502,
    "internal_error": 500,
}


def conversation_key(messages: Sequence[Message], header: str | None) -> str:
    """The client's `X-Conversation-Id`, else a hash of the conversation's opening.

    The opening (every message up to and including the first user message) is the same on
    every turn of one conversation, so a local critic keyed by it keeps its KV cache across
    turns. Two conversations with the same opening share a key; clients that care send the header.
    """
    if header:
        key = header.strip()
        if 0 < len(key) <= MAX_KEY_CHARS and key.isprintable():
            return key
    opening: list[dict[str, Any]] = []
    for m in messages:
        opening.append({"role": m.role, "content": m.content})
        if m.role == "user":
            break
    digest = hashlib.sha256(json.dumps(opening, sort_keys=True).encode()).hexdigest()
    return f"h-{digest[:20]}"


class _MeteredActor(ChatBackend):
    """The actor for one request: delegates, and records calls, tokens and latency."""

    def __init__(self, inner: ChatBackend, metrics: ServeMetrics) -> None:
        self.inner, self.metrics = inner, metrics
        self.calls = self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0
        self.error: BaseException | None = None

    def complete(
        self, conversations, tools=None, sampling=None, *, keys=None, seeds=None
    ) -> list[Completion]:
        t0 = time.perf_counter()
        try:
            out = self.inner.complete(conversations, tools, sampling, keys=keys, seeds=seeds)
        except BaseException as e:
            self.error = e
            raise
        finally:
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.calls += 1
            self.metrics.observe("upstream_seconds", dt)
        for c in out:
            self.prompt_tokens += c.num_prompt_tokens
            self.completion_tokens += c.num_completion_tokens
        return out


class _MeteredReviewer:
    """The reviewer for one request: at most `slots` reviews at once; keeps what it reviewed."""

    def __init__(self, inner: Reviewer, slots: threading.Semaphore, metrics: ServeMetrics) -> None:
        self.inner, self.slots, self.metrics = inner, slots, metrics
        self.seen: list[Proposal] = []
        self.seconds = 0.0
        self.error: BaseException | None = None

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        t0 = time.perf_counter()
        try:
            with self.slots:
                out = self.inner.review(requests)
        except BaseException as e:
            self.error = e
            raise
        finally:
            dt = time.perf_counter() - t0
            self.seconds += dt
            self.metrics.observe("review_seconds", dt)
        for r, review in zip(requests, out):
            self.seen.append(Proposal(r.text, r.action, r.parse_error, review))
            self.metrics.inc("reviews_total")
            self.metrics.inc("verdicts_total", verdict=review.verdict)
        return out


@dataclass
class Outcome:
    """What happened to one request."""

    request_id: str
    key: str
    status: str
    completion: Completion | None = None
    message: Message | None = None
    finish: str = "stop"
    proposals: list[Proposal] = field(default_factory=list)
    error: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    @property
    def http_status(self) -> int:
        return STATUS_HTTP[self.status]

    def summary(self, fallback: str) -> dict[str, Any]:
        """The compact account sent with the response (`supervision` field, `X-Supervision`)."""
        verdicts = [p.review.verdict for p in self.proposals if p.review is not None]
        return {
            "request_id": self.request_id,
            "conversation_key": self.key,
            "proposals": len(self.proposals),
            "verdicts": verdicts,
            "revisions": max(len(self.proposals) - 1, 0),
            "fallback": fallback if self.status == "fallback" else None,
            "status": self.status,
        }


class SupervisedProxy:
    """Supervises one chat request at a time per calling thread (many threads at once).

    Args:
        actor: the upstream actor (an `OpenAIBackend`; any `ChatBackend` works, called without
            `start`, as OpenAI-compatible APIs keep no per-conversation state).
        reviewer: any `Reviewer`.
        config: the revision budget and fallback (`supervision:` in the serve config).
        metrics: where counters and latencies go.
        task_data: `Task.data` of every request, what a reviewer may read about the deployment
            (`RetailRuleCritic` needs `db_seed`).
        review_concurrency: reviews running at once; 1 for a local critic model (one model,
            one forward at a time), more for rule or API critics.
        accelerator, precision: Lightning Fabric settings for a local critic model.
    """

    def __init__(
        self,
        actor: ChatBackend,
        reviewer: Reviewer,
        config: SupervisionConfig,
        metrics: ServeMetrics,
        task_data: dict[str, Any] | None = None,
        review_concurrency: int = 1,
        accelerator: str = "auto",
        precision: str | int = "32-true",
    ) -> None:
        # the Supervisor places and casts local models with Fabric; its loop is `supervise_step`
        sup = Supervisor(actor, reviewer, accelerator=accelerator, precision=precision)
        self.actor, self.reviewer, self.fabric = sup.actor, sup.reviewer, sup.fabric
        self.config, self.metrics = config, metrics
        self.task_data = dict(task_data or {})
        self._review_slots = threading.BoundedSemaphore(review_concurrency)

    def run(self, request: ChatRequest, key: Hashable, request_id: str) -> Outcome:
        """Supervise one request; never raises (failures become an `Outcome` status)."""
        t0 = time.perf_counter()
        actor = _MeteredActor(self.actor, self.metrics)
        reviewer = _MeteredReviewer(self.reviewer, self._review_slots, self.metrics)
        seed = request.seed if request.seed is not None else secrets.randbits(31)
        out = Outcome(request_id, str(key), "ok", seed=seed)
        task = Task(id=str(key), split="serve", data=dict(self.task_data))
        try:
            with self.fabric.autocast():
                first = actor.complete(
                    [request.messages], request.tools, request.sampling, keys=[key], seeds=[seed]
                )
                chosen, history = supervise_step(
                    live_messages=[request.messages],
                    tasks=[task],
                    privileged=[""],
                    completions=first,
                    actor=actor,
                    reviewer=reviewer,
                    tools=request.tools,
                    sampling=request.sampling,
                    keys=[key],
                    seeds=[seed],
                    config=self.config,
                )
            out.completion, out.proposals = chosen[0], history[0]
            last = out.proposals[-1].review
            if last is not None and not last.approved:
                out.status = "fallback"
            if out.completion.action is None:
                out.status = "malformed"
                out.error = (
                    f"the upstream model's output could not be parsed ({out.completion.parse_error}) "
                    f"after {len(out.proposals)} proposal(s); nothing was returned"
                )
            else:
                out.message, out.finish = assistant_message(out.completion)
        except Exception as e:  # noqa: BLE001  (every failure is answered, never a hang or a 500 page)
            out.proposals = reviewer.seen
            out.status, out.error = self._classify(e, actor, reviewer)
        out.usage = {
            "prompt_tokens": actor.prompt_tokens,
            "completion_tokens": actor.completion_tokens,
            "total_tokens": actor.prompt_tokens + actor.completion_tokens,
        }
        out.timings = {
            "upstream_s": round(actor.seconds, 6),
            "review_s": round(reviewer.seconds, 6),
            "supervise_s": round(time.perf_counter() - t0, 6),
        }
        self._count(out, actor.calls)
        return out

    def _classify(self, e: Exception, actor: _MeteredActor, reviewer: _MeteredReviewer) -> tuple[str, str]:
        if reviewer.error is e:
            log.error("reviewer failed: %s", e, exc_info=not isinstance(e, EndpointError))
            return "reviewer_error", f"the reviewer failed: {e}"
        if actor.error is e:
            timeout = isinstance(e.__cause__, openai.APITimeoutError)
            self.metrics.inc("upstream_errors_total", kind="timeout" if timeout else "error")
            # an EndpointError already says what happened after retries; anything else (a body
            # that is not a chat completion) gets its type named
            detail = (
                str(e)
                if isinstance(e, EndpointError)
                else f"its response was unusable ({type(e).__name__}: {e})"
            )
            log.warning("upstream failed: %s", detail)
            return ("upstream_timeout" if timeout else "upstream_error"), f"upstream actor failed: {detail}"
        log.exception("supervising a request failed")
        return "internal_error", f"the proxy failed while supervising the request: {type(e).__name__}: {e}"

    def _count(self, out: Outcome, calls: int) -> None:
        self.metrics.inc("revisions_total", max(calls - 1, 0))
        if out.status == "fallback":
            self.metrics.inc("fallbacks_total")
        if out.status == "malformed":
            self.metrics.inc("upstream_errors_total", kind="malformed")

    def audit_record(
        self, request: ChatRequest, out: Outcome, *, answered: int, model: str, t_start: float
    ) -> Trajectory:
        """The request as a `Trajectory` (see `serve.audit`): no headers, no keys."""
        messages = list(request.messages)
        turns = []
        if out.completion is not None:
            n_assistant = sum(m.role == "assistant" for m in messages)
            if out.message is not None:
                messages.append(out.message)
            turns.append(
                Turn(
                    index=n_assistant,
                    text=out.completion.text,
                    action=out.completion.action,
                    parse_error=out.completion.parse_error,
                    proposals=out.proposals,
                    info={"finish_reason": out.finish, "sent": out.message is not None},
                )
            )
        info: dict[str, Any] = {
            "request_id": out.request_id,
            "conversation_key": out.key,
            "time": round(t_start, 3),
            "status": out.status,
            "http_status": answered,
            "model": model,
            "fallback": self.config.fallback if out.status == "fallback" else None,
            "usage": out.usage,
            **out.timings,
        }
        if out.error:
            info["error"] = out.error
        if not turns and out.proposals:
            info["proposals"] = [_proposal_dict(p) for p in out.proposals]
        return Trajectory(
            task_id=out.key, split="serve", messages=messages, turns=turns, seed=out.seed, info=info
        )


def _proposal_dict(p: Proposal) -> dict[str, Any]:
    return to_dict(p)


def default_sampling(actor: ChatBackend) -> SamplingParams:
    """The actor's own sampling defaults, used for fields a request leaves out."""
    s = getattr(actor, "sampling", None)
    return s if isinstance(s, SamplingParams) else SamplingParams()
