"""GenerativeCritic: prompts, one batched call, verdict parsing, defaults, and supervision end to end."""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lightning_asym.backends import ScriptedBackend
from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.envs.retail import POLICY, WRITE_TOOLS, RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.review import GenerativeCritic, Reviewer, ReviewRequest, StatefulReviewer
from lightning_asym.review.format import INSTRUCTION, parse_verdict
from lightning_asym.rollout import RolloutEngine, SupervisionConfig
from lightning_asym.types import Action, Message, Review, Task


class Canned(ChatBackend):
    """Answers with fixed texts in order (cycling) and records every call."""

    def __init__(self, texts: list[str], num_tokens: int = 0) -> None:
        self.texts, self.num_tokens = texts, num_tokens
        self.calls: list[dict] = []

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):
        start = sum(len(c["prompts"]) for c in self.calls)
        self.calls.append(
            dict(
                prompts=[list(c) for c in conversations],
                tools=tools,
                sampling=sampling,
                keys=keys,
                seeds=seeds,
            )
        )
        texts = [self.texts[(start + i) % len(self.texts)] for i in range(len(conversations))]
        # like TransformersBackend, the answer is also "parsed" as a reply action, which the critic ignores
        return [Completion(t, Action.reply(t), num_completion_tokens=self.num_tokens) for t in texts]


TASK = Task(id="t0", split="test", instruction="", privileged="the user's order #W1 is pending")
CONV = [
    Message("system", content="POLICY: authenticate before any write."),
    Message("user", content="Cancel my order #W1 please."),
]


def request(action: Action | None = None, privileged: str | None = None, messages=CONV) -> ReviewRequest:
    action = action or Action("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"})
    return ReviewRequest(messages, "", action, None, TASK, [], privileged)


def test_parses_verdicts_and_passes_feedback_through():
    backend = Canned(
        ["VERDICT: approve\nFEEDBACK:", "**Verdict:** REVISE\nFeedback: Authenticate the user first.\nmore"],
        num_tokens=7,
    )
    critic = GenerativeCritic(backend)
    assert isinstance(critic, Reviewer)
    ok, bad = critic.review([request(), request()])
    assert (ok.verdict, ok.feedback, ok.parsed, ok.num_tokens) == ("approve", "", True, 7)
    assert (bad.verdict, bad.feedback, bad.parsed) == ("revise", "Authenticate the user first.", True)
    assert not bad.approved
    assert critic.stats() == dict(
        reviews=2, unparsed=0, unparsed_rate=0.0, revise=1, revise_rate=0.5, tokens=14
    )


def test_one_batched_call_with_default_greedy_sampling_and_no_tools():
    backend = Canned(["VERDICT: approve"])
    critic = GenerativeCritic(backend)
    reviews = critic.review([request(Action.reply(f"reply {i}")) for i in range(5)])
    assert len(reviews) == 5 and len(backend.calls) == 1
    (call,) = backend.calls
    assert len(call["prompts"]) == 5 and call["tools"] is None and call["keys"] is None
    assert (
        call["sampling"].greedy and call["sampling"].max_new_tokens == 48 and "\n\n" in call["sampling"].stop
    )
    assert len(set(call["seeds"])) == 5  # different prompts, different seeds
    assert critic.review([]) == [] and len(backend.calls) == 1


def test_seed_depends_on_the_prompt_not_the_batch():
    backend = Canned(["VERDICT: approve"])
    critic = GenerativeCritic(backend, sampling=SamplingParams(temperature=1.0), seed=3)
    a, b = request(Action.reply("a")), request(Action.reply("b"))
    critic.review([a, b])
    critic.review([b])
    assert backend.calls[0]["seeds"][1] == backend.calls[1]["seeds"][0]
    assert backend.calls[0]["sampling"].temperature == 1.0
    other = Canned(["VERDICT: approve"])
    GenerativeCritic(other, seed=4).review([b])
    assert other.calls[0]["seeds"][0] != backend.calls[1]["seeds"][0]


@pytest.mark.parametrize("default", ["approve", "revise"])
def test_unparseable_answers_get_the_default_and_are_counted(default):
    backend = Canned(["I think this is fine.", "VERDICT: revise\nFEEDBACK: no", "verdict: maybe"])
    critic = GenerativeCritic(backend, default_verdict=default)
    first, second, third = critic.review([request(), request(), request()])
    assert (first.verdict, first.feedback, first.parsed) == (default, "", False)
    assert first.num_tokens == 5  # the backend reported 0 tokens: whitespace words instead
    assert second.parsed and second.verdict == "revise"
    assert not third.parsed and third.verdict == default
    assert (critic.num_reviews, critic.num_unparsed) == (3, 2)
    assert critic.stats()["unparsed_rate"] == pytest.approx(2 / 3)
    assert critic.num_revise == 1 + 2 * (default == "revise")


def test_feedback_is_shortened():
    backend = Canned(["VERDICT: revise\nFEEDBACK: " + "word " * 100])
    (review,) = GenerativeCritic(backend, max_feedback_chars=20).review([request()])
    assert review.feedback == "word word word word"


def test_privileged_information_reaches_the_prompt_only_when_given():
    backend = Canned(["VERDICT: approve"])
    critic = GenerativeCritic(backend)
    critic.review([request(privileged="the user's order #W1 is pending"), request()])
    with_info, without = (p[-1].content for p in backend.calls[0]["prompts"])
    assert "the user's order #W1 is pending" in with_info
    assert "order #W1 is pending" not in without
    assert 'cancel_pending_order({"order_id": "#W1"' in without and "Cancel my order #W1" in without


def test_policy_in_the_system_prompt_unless_disabled_and_max_messages():
    backend = Canned(["VERDICT: approve"])
    long = [*CONV, *(Message("user", content=f"message {i}") for i in range(10))]
    GenerativeCritic(backend).review([request()])
    GenerativeCritic(backend, include_policy=False, max_messages=3).review([request(messages=long)])
    with_policy, without_policy = (c["prompts"][0] for c in backend.calls)
    assert with_policy[0].role == "system" and "authenticate before any write" in with_policy[0].content
    assert without_policy[0].content == INSTRUCTION
    transcript = without_policy[1].content
    assert "message 9" in transcript and "message 7" in transcript and "message 6" not in transcript


def test_few_shot_examples_come_between_the_system_prompt_and_the_request():
    backend = Canned(["VERDICT: approve"])
    with_examples = dataclasses.replace(request(), examples=RetailEnv().review_examples())
    GenerativeCritic(backend).review([with_examples])
    GenerativeCritic(backend, few_shot=True).review([with_examples])
    plain, shots = (c["prompts"][0] for c in backend.calls)
    assert [m.role for m in plain] == ["system", "user"]
    assert [m.role for m in shots] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert shots[0] == plain[0] and shots[-1] == plain[-1]
    assert [parse_verdict(m.content)[0] for m in shots[2:5:2]] == ["revise", "approve"]
    assert shots[1].content.startswith("Conversation so far:") and "Proposed next action:" in shots[3].content


def test_invalid_settings_name_the_config_key():
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.default_verdict.*'maybe'"):
        GenerativeCritic(Canned(["x"]), default_verdict="maybe")
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.max_messages"):
        GenerativeCritic(Canned(["x"]), max_messages=0)
    with pytest.raises(ValueError, match=r"model\.reviewer\.init_args\.max_feedback_chars"):
        GenerativeCritic(Canned(["x"]), max_feedback_chars=0)
    with pytest.raises(TypeError, match=r"model\.reviewer\.init_args\.backend"):
        GenerativeCritic(object())  # type: ignore[arg-type]


def test_importable_from_critic_module():
    from lightning_asym.critic import GenerativeCritic as FromCritic

    assert FromCritic is GenerativeCritic


def retail_requests(n: int) -> list[ReviewRequest]:
    env = RetailEnv()
    out = []
    for task in env.tasks("test")[:n]:
        messages = env.fork().reset(task, 0)
        action = Action("find_user_id_by_email", {"email": "someone@example.com"})
        out.append(ReviewRequest(messages, "", action, None, task, env.tool_schemas, env.privileged(task)))
    return out


def test_tiny_transformers_critic_end_to_end():
    from lightning_asym.backends.hf import TransformersBackend

    torch.set_num_threads(1)
    backend = TransformersBackend("tiny", tiny={"hidden_size": 32})  # byte tokens, 4,096 positions
    sampling = SamplingParams(max_new_tokens=6, temperature=0)
    critic = GenerativeCritic(backend, sampling=sampling, include_policy=False, mode="generate")
    requests = retail_requests(3)
    reviews = critic.review(requests)
    # a random model writes garbage: every answer is unparseable, defaulted, and its tokens counted
    assert [r.verdict for r in reviews] == ["approve"] * 3
    assert not any(r.parsed for r in reviews)
    assert all(r.num_tokens > 0 for r in reviews)
    assert critic.stats()["unparsed"] == 3 and critic.num_tokens == sum(r.num_tokens for r in reviews)
    # with the policy the prompts overflow the context: empty answers, still counted and defaulted
    with_policy = GenerativeCritic(backend, sampling=sampling, default_verdict="revise", mode="generate")
    assert POLICY.strip()[:40] in with_policy.prompt(requests[0])[0].content
    reviews = with_policy.review(requests)
    assert [(r.verdict, r.parsed, r.num_tokens) for r in reviews] == [("revise", False, 0)] * 3
    assert with_policy.stats()["unparsed_rate"] == 1.0


def write_critic(messages, task, rng) -> str:
    """Asks for a revision of every write tool call and approves everything else."""
    proposed = messages[-1].content.rsplit("Proposed next action:\n", 1)[1]
    name = proposed.split("(", 1)[0]
    if name in WRITE_TOOLS:
        return f"VERDICT: revise\nFEEDBACK: Confirm {name} with the user first."
    return "VERDICT: approve\nFEEDBACK:"


def test_supervision_with_a_generative_critic_on_retail():
    env = RetailEnv()
    critic = GenerativeCritic(ScriptedBackend(policy=write_critic), include_policy=False)
    config = SupervisionConfig(max_revisions=1, fallback="last", privileged=True)
    engine = RolloutEngine(env, max_turns=10, supervision=config)
    trajs = engine.collect(env.tasks("test")[:2], NoisyOracleBackend(error_rate=0.0), critic)
    proposals = [p for t in trajs for turn in t.turns for p in turn.proposals]
    assert critic.num_reviews == len(proposals) and critic.num_unparsed == 0
    writes = 0
    for t in trajs:
        for turn in t.turns:
            assert turn.proposals and all(
                p.review is not None and p.label is not None for p in turn.proposals
            )
            assert all(set(p.label) >= {"deviation", "violation"} for p in turn.proposals)
            if turn.action is not None and turn.action.name in WRITE_TOOLS:
                writes += 1
                # revised once; the clean oracle repeats itself and the fallback sends the last proposal
                assert [p.review.verdict for p in turn.proposals] == ["revise", "revise"]
                assert turn.proposals[0].review.feedback == f"Confirm {turn.action.name} with the user first."
                assert not turn.proposals[0].label["deviation"]  # the critic was wrong: the gold write
            else:
                assert [p.review.verdict for p in turn.proposals] == ["approve"]
    assert writes >= 1
    assert critic.stats()["revise"] == 2 * writes


def test_llm_critic_config_runs_with_a_tiny_critic(tmp_path):
    """The shipped config end to end through the CLI, with a tiny random model as critic."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from lightning_asym.types import Trajectory, read_jsonl

    config = Path(__file__).parent.parent / "configs" / "supervise" / "oracle_llm_critic.yaml"
    args = ["--model.reviewer.init_args.backend", "tiny", "--model.init_args.max_k", "2"]
    args += ["--data.init_args.num_test_tasks", "2", "--data.init_args.test_trials", "1"]
    args += ["--data.init_args.max_turns", "4"]
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_asym.cli", "test", "--config", str(config), *args],
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (run,) = (tmp_path / "runs" / "retail_oracle_llm_critic").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert "test/pass^1" in metrics and "test/intervention_rate" in metrics
    trajs = read_jsonl(run / "trajectories" / "test.jsonl", Trajectory)
    assert len(trajs) == 2 and all(len(t.turns) == 4 for t in trajs)
    reviews = [p.review for t in trajs for turn in t.turns for p in turn.proposals]
    # scored by default, but the retail policy overflows the tiny model's 4,096 byte positions:
    # every review takes the default verdict, unparsed and unscored
    assert len(reviews) == 8
    assert all(r is not None and r.approved and not r.parsed and r.score is None for r in reviews)


class Recording:
    """Approves everything, records the requests' keys and what the engine releases."""

    def __init__(self) -> None:
        self.keys: list = []
        self.released: list = []

    def review(self, requests: list[ReviewRequest]) -> list[Review]:
        self.keys.extend(r.key for r in requests)
        return [Review() for _ in requests]

    def release(self, keys) -> None:
        self.released.extend(keys)


def test_requests_carry_the_episode_key_and_the_engine_releases_a_stateful_reviewer():
    env = RetailEnv()
    reviewer = Recording()
    assert isinstance(reviewer, StatefulReviewer) and isinstance(reviewer, Reviewer)
    engine = RolloutEngine(env, max_turns=6)
    tasks = env.tasks("test")[:3]
    trajs = engine.collect(tasks, NoisyOracleBackend(error_rate=0.0), reviewer, trials=1)
    keys = [f"{t.id}#0#{i}" for i, t in enumerate(tasks)]
    assert set(reviewer.keys) == set(keys)
    assert sum(len(t.turns) for t in trajs) == len(reviewer.keys)  # every review named its episode
    assert sorted(reviewer.released) == sorted(keys)  # each episode released once, when it ended
    assert isinstance(GenerativeCritic(Canned(["x"])), StatefulReviewer)
