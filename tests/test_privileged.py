"""Privileged information reaches the critic's data and prompts when asked, and never the actor."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning import Trainer

from lightning_asym.datagen import CriticExampleWriter
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.jobs import CriticDataGen, CriticTaskData
from lightning_asym.review.base import ReviewRequest
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.rollout.supervision import SupervisionConfig
from lightning_asym.types import REVISE, CriticExample, Message, Review, read_jsonl


class Watched(NoisyOracleBackend):
    """The noisy oracle, recording every conversation it is asked to continue."""

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.seen: list[list[Message]] = []

    def complete(self, conversations, tools, sampling=None, *, keys=None, seeds=None):
        self.seen += [list(c) for c in conversations]
        return super().complete(conversations, tools, sampling, keys=keys, seeds=seeds)


class AlwaysRevises:
    """Asks for a revision of every proposal (the fallback then sends the last); records its requests."""

    def __init__(self) -> None:
        self.requests: list[ReviewRequest] = []

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        self.requests += list(requests)
        return [Review(REVISE, "Check the order id again.") for _ in requests]


def _leaks(conversations: list[list[Message]], secrets: set[str]) -> list[str]:
    texts = [f"{m.content or ''} {m.tool_calls or ''}" for conv in conversations for m in conv]
    return [s[:60] for s in secrets for t in texts if s in t]


def _secrets(env: RetailEnv, split: str) -> set[str]:
    out = {env.privileged(t).strip() for t in env.tasks(split)}
    assert all(out) and all("Gold actions" in s for s in out)
    return out


def test_datagen_stores_privileged_text_for_the_critic_and_never_shows_the_actor(tmp_path: Path):
    env = RetailEnv(num_train=3, num_validation=2, num_test=0)
    actor = Watched(error_rate=0.3)
    model = CriticDataGen(
        actor, trials=2, branch_rollouts=2, branch_turns=1, privileged=True, inloop_trials=1
    )
    writer = CriticExampleWriter(str(tmp_path / "critic"), val_fraction=0.3)
    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    data = CriticTaskData(env, num_tasks=3, batch_size=5, inloop_split="validation")
    trainer.predict(model, data, return_predictions=False)
    examples = read_jsonl(writer.examples_path(0), CriticExample)
    by_task = {t.id: env.privileged(t) for s in ("train", "validation") for t in env.tasks(s)}
    assert {e.source for e in examples} >= {"gold", "inloop"}
    assert all(e.privileged == by_task[e.task_id] for e in examples)  # every source carries it
    assert actor.seen and not _leaks(actor.seen, _secrets(env, "train") | _secrets(env, "validation"))


def test_a_privileged_reviewer_sees_the_text_and_the_revising_actor_does_not():
    env = RetailEnv(num_train=0, num_validation=0, num_test=3)
    actor, reviewer = Watched(error_rate=0.3), AlwaysRevises()
    engine = RolloutEngine(env, seed=0, supervision=SupervisionConfig(max_revisions=1, privileged=True))
    trajs = engine.collect(env.tasks("test"), actor, reviewer, trials=1)
    secrets = _secrets(env, "test")
    assert reviewer.requests and all(
        r.privileged and r.privileged.strip() in secrets for r in reviewer.requests
    )
    revised = [p for t in trajs for turn in t.turns for p in turn.proposals if p.review.verdict == REVISE]
    assert revised and any("Check the order id again" in (m.content or "") for c in actor.seen for m in c)
    assert not _leaks(actor.seen, secrets) and not _leaks([t.messages for t in trajs], secrets)


def test_without_the_option_the_reviewer_gets_nothing_privileged():
    env = RetailEnv(num_train=0, num_validation=0, num_test=2)
    reviewer = AlwaysRevises()
    RolloutEngine(env, seed=0).collect(env.tasks("test"), NoisyOracleBackend(error_rate=0.3), reviewer)
    assert reviewer.requests and all(r.privileged is None for r in reviewer.requests)
