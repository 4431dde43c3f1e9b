"""Scored reviews (P(revise) from the verdict logits) and the per-episode prompt cache, in float32.

Every cached, batched score is checked against a fresh full encoding of the same prompt, one
row, no cache, computed here with a plain forward pass of the model.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hardware import fast_dtype
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.review import GenerativeCritic, ReviewRequest
from lightning_asym.review.verdict import revise_logit
from lightning_asym.types import Action, CriticExample, Message, Task, ToolCall

TASK = Task(id="t0", split="test", instruction="")
SAMPLING = SamplingParams(max_new_tokens=8, temperature=0.0, stop=["\n\n"])


@pytest.fixture(scope="module")
def backend() -> TransformersBackend:
    torch.set_num_threads(1)
    return TransformersBackend("tiny", tiny={"hidden_size": 32}, dtype="float32")


def fresh_p_revise(critic: GenerativeCritic, request: ReviewRequest) -> float:
    """P(revise) of the request's prompt encoded from scratch: one row, no cache, full logits."""
    assert critic.scorer is not None
    ids = critic.scorer.ids(critic.prompt(request))
    with torch.no_grad():
        logits = critic.backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
    return float(torch.sigmoid(revise_logit(logits, critic.scorer.probe)))


def fresh_feedback_ids(critic: GenerativeCritic, request: ReviewRequest, max_new: int) -> list[int]:
    """Greedy tokens after the forced `VERDICT: revise\\nFEEDBACK:` head, re-encoding everything each step."""
    assert critic.scorer is not None
    ids = critic.scorer.ids(critic.prompt(request)) + critic.scorer.head[len(critic.scorer.probe.prefix) :]
    out: list[int] = []
    for _ in range(max_new):
        with torch.no_grad():
            tok = int(critic.backend.model(input_ids=torch.tensor([ids + out])).logits[0, -1].argmax())
        out.append(tok)
        if tok in critic.backend.eos_ids or "\n\n" in critic.backend.tokenizer.decode(out):
            break
    return out


def conversation(episode: int, turns: int) -> list[Message]:
    """A conversation whose length differs by episode, so batched rows have different lengths."""
    msgs = [Message("system", content="POLICY: authenticate before any write.")]
    msgs.append(Message("user", content=f"Hi, I am customer {episode}. " + "Please help. " * episode))
    for t in range(turns):
        # every other step is a tool call, so a window cuts calls that `earlier_actions` lists
        call = [ToolCall("lookup", {"customer": episode, "step": t})] if t % 2 else None
        msgs.append(Message("assistant", content=f"Step {t} for customer {episode}.", tool_calls=call))
        msgs.append(Message("user", content=f"ok {t}" + "!" * (episode + t)))
    return msgs


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"few_shot": True, "privileged": True},
        {"max_messages": 2},  # a sliding window: no shared transcript prefix, still exact
        {"max_messages": 2, "earlier_actions": True, "privileged": True},
    ],
    ids=["plain", "few_shot+privileged", "max_messages", "max_messages+earlier_actions"],
)
def test_cached_batched_scores_match_a_fresh_full_encoding(backend, options):
    critic = GenerativeCritic(backend, include_policy=False, sampling=SAMPLING, **options)
    assert critic.mode == "score" and critic.scorer is not None
    secret = "the order is pending" if options.get("privileged") else None
    # few-shot examples ride on the requests as the engine sends them: one tuple for the env
    examples = RetailEnv().review_examples() if options.get("few_shot") else ()
    n_checked = 0
    for turn in range(4):
        requests = [
            ReviewRequest(
                conversation(e, turn),
                "",
                Action("cancel", {"id": e, "t": turn}),
                None,
                TASK,
                privileged=secret,
                key=f"ep{e}",
                examples=examples,
            )
            for e in range(3)
            if turn < 3 or e != 1  # episode 1 ended after turn 2: the batch shrinks
        ]
        before = critic.scorer.encoded_tokens
        reviews = critic.review(requests)
        assert len(critic.prompt(requests[0])) == 2 + 2 * len(examples)  # the examples are in the opening
        for req, rev in zip(requests, reviews):
            assert rev.score == pytest.approx(fresh_p_revise(critic, req), abs=1e-5)
            n_checked += 1
        # a revision: the same transcripts with other actions, re-reviewed from the cached prefix
        again = [
            ReviewRequest(
                r.messages,
                "",
                Action.reply(f"revised {turn}"),
                None,
                TASK,
                privileged=secret,
                key=r.key,
                examples=examples,
            )
            for r in requests
        ]
        first_encoded = critic.scorer.encoded_tokens - before
        before = critic.scorer.encoded_tokens
        for req, rev in zip(again, critic.review(again)):
            assert rev.score == pytest.approx(fresh_p_revise(critic, req), abs=1e-5)
            n_checked += 1
        full = sum(len(critic.scorer.ids(critic.prompt(r))) for r in again)
        # a re-review encodes little more than the new action, on every turn
        assert critic.scorer.encoded_tokens - before < 0.3 * full
        if turn and "max_messages" not in options:
            assert first_encoded < 0.5 * full  # a new turn encodes only what was appended
    assert n_checked == 22
    if options.get("earlier_actions"):  # the digest was in the prompt, and held the cut calls
        assert 'lookup({"customer": 0, "step": 1})' in critic.prompt(requests[0])[-1].content


def test_scored_ids_and_verdict_position_are_critic_sft_s(backend):
    from lightning_asym.jobs.critic_data import CriticEncoder

    critic = GenerativeCritic(backend, include_policy=False, max_messages=3)
    enc = CriticEncoder(
        backend.tokenizer,
        lambda m: backend.render(m, True),
        backend.end_of_turn,
        4096,
        include_policy=False,
        max_messages=3,
    )
    ex = CriticExample("t0", conversation(2, 3), "", Action("cancel", {"id": 2}), "revise", "Ask first.")
    req = ReviewRequest(ex.messages, ex.text, ex.action, None, TASK)
    ids = critic.scorer.ids(critic.prompt(req))
    encoded = enc.encode(ex)
    batch = enc.collate([encoded])
    assert ids == encoded.ids[: encoded.answer_start + len(enc.probe_prefix)]
    assert int(batch["verdict_pos"][0]) == len(ids) - 1
    assert (enc.approve_id, enc.revise_id) == (critic.scorer.probe.approve_id, critic.scorer.probe.revise_id)


def test_threshold_decides_and_feedback_is_generated_for_revise_rows_only(backend, monkeypatch):
    requests = [
        ReviewRequest(conversation(e, 1), "", Action("cancel", {"id": e}), None, TASK, key=f"e{e}")
        for e in range(4)
    ]
    probe = GenerativeCritic(backend, include_policy=False, sampling=SAMPLING)
    scores = [r.score for r in probe.review(requests)]
    assert len(set(scores)) == 4
    threshold = sorted(scores)[2]  # two rows at or above it
    critic = GenerativeCritic(backend, include_policy=False, sampling=SAMPLING, revise_threshold=threshold)
    calls = []
    feedback = critic.scorer.feedback
    monkeypatch.setattr(
        critic.scorer, "feedback", lambda rows, *a: calls.append(len(rows)) or feedback(rows, *a)
    )
    reviews = critic.review(requests)
    assert [r.verdict for r in reviews] == ["revise" if s >= threshold else "approve" for s in scores]
    assert calls == [2]
    for req, rev in zip(requests, reviews):
        if rev.verdict == "approve":
            assert (rev.feedback, rev.num_tokens, rev.parsed) == ("", 1, True)
            continue
        # the feedback is the greedy continuation of the revise answer, as a fresh encoding gives it
        ids = fresh_feedback_ids(critic, req, SAMPLING.max_new_tokens)
        text = backend.tokenizer.decode(ids, skip_special_tokens=True).replace("*", "")
        expected = " ".join(text.split("\n\n")[0].split("\n")[0].split())[: critic.max_feedback_chars].strip()
        assert rev.feedback == expected and rev.num_tokens == 1 + len(ids)
    assert critic.stats()["revise"] == 2
    # the whole answer text, token for token, from the cached verdict position on
    scored = critic.scorer.score([critic.prompt(r) for r in requests], [r.key for r in requests])
    answers = critic.scorer.feedback(scored, SAMPLING, [0] * len(requests))
    decode = lambda ids: backend.tokenizer.decode(ids, skip_special_tokens=True)  # noqa: E731
    for req, (text, n) in zip(requests, answers):
        ids = fresh_feedback_ids(critic, req, SAMPLING.max_new_tokens)
        generated = decode(ids)
        cut = generated[: generated.index("\n\n") + 2] if "\n\n" in generated else generated
        assert text == decode(critic.scorer.head) + cut and n == len(ids)
        assert text.startswith("VERDICT: revise\nFEEDBACK:")
    none = GenerativeCritic(backend, include_policy=False, revise_threshold=1.0)
    assert all(r.approved for r in none.review(requests))


def test_cache_is_bounded_and_released(backend):
    critic = GenerativeCritic(backend, include_policy=False, cache_size=2)
    requests = [
        ReviewRequest(conversation(e, 1), "", Action.reply("hi"), None, TASK, key=e) for e in range(3)
    ]
    critic.review(requests)
    assert critic.scorer.num_cached == 2  # the least recently reviewed was dropped
    critic.release([1, 2, 99])
    assert critic.scorer.num_cached == 0
    # requests without a key are scored but leave nothing behind
    critic.review([ReviewRequest(conversation(0, 1), "", Action.reply("hi"), None, TASK)])
    assert critic.scorer.num_cached == 0


def test_modes_and_dtype():
    from lightning_asym.backends import ScriptedBackend

    scripted = ScriptedBackend(policy=lambda messages, task, rng: "VERDICT: approve")
    assert GenerativeCritic(scripted).mode == "generate"
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.mode 'score'"):
        GenerativeCritic(scripted, mode="score")
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.mode"):
        GenerativeCritic(scripted, mode="fast")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.dtype"):
        GenerativeCritic(scripted, dtype="float32")
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.revise_threshold"):
        GenerativeCritic(scripted, revise_threshold=1.5)
    by_name = GenerativeCritic("tiny")  # the hardware's fast dtype (tests/test_hardware.py)
    assert by_name.backend.model.dtype == getattr(torch, fast_dtype()) and by_name.mode == "score"
    assert GenerativeCritic("tiny", dtype="bfloat16").backend.model.dtype == torch.bfloat16
