"""`Supervisor`: supervision of a live conversation outside the Trainer."""

from __future__ import annotations

import pytest
import torch

from lightning_asym import Supervisor
from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.scripted import ScriptedBackend
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
from lightning_asym.supervisor import HoldsModules
from lightning_asym.types import REVISION_PREFIX, Message, Review


class NoWrites:
    """Rejects every tool call; approves replies."""

    def __init__(self):
        self.seen = []

    def review(self, requests):
        self.seen.extend(requests)
        return [
            Review("approve") if r.action and r.action.is_reply else Review("revise", "ask first")
            for r in requests
        ]


def _policy(messages, task, rng):
    if messages[-1].content.startswith(REVISION_PREFIX):
        return "Could you confirm the order id?"
    return '<tool_call>{"name": "cancel_order", "arguments": {"order_id": "#W1"}}</tool_call>'


def test_revises_on_feedback_and_keeps_history():
    critic = NoWrites()
    sup = Supervisor(ScriptedBackend(_policy), critic, accelerator="cpu")
    out = sup.step([{"role": "user", "content": "cancel my order"}])
    assert out.action.is_reply and out.action.content == "Could you confirm the order id?"
    assert [p.review.verdict for p in out.proposals] == ["revise", "approve"]
    assert out.approved and out.revisions == 1
    # the critic saw the user's conversation, not the feedback loop
    assert [m.content for m in critic.seen[0].messages] == ["cancel my order"]


def test_end_releases_a_stateful_reviewers_conversation():
    class Keeper(NoWrites):
        def __init__(self):
            super().__init__()
            self.released = []

        def release(self, keys):
            self.released.extend(keys)

    critic = Keeper()
    sup = Supervisor(ScriptedBackend(responses=["ok"]), critic)
    sup.step([Message("user", content="x")], key="conv")
    assert critic.seen[-1].key == "conv" and critic.released == []
    sup.end("conv")
    assert critic.released == ["conv"]
    sup.step([Message("user", content="y")])  # an anonymous conversation ends with its step
    assert len(critic.released) == 2


def test_fallback_after_budget_is_spent():
    class Never:
        def review(self, requests):
            return [Review("revise", "no") for _ in requests]

    sup = Supervisor(ScriptedBackend(responses=["a", "b", "c"]), Never(), max_revisions=1, fallback="block")
    out = sup.step([Message("user", content="hi")])
    assert not out.approved and len(out.proposals) == 2
    assert out.action.content == sup.config.block_message


def test_privileged_reaches_the_critic_only_when_enabled():
    critic = NoWrites()
    Supervisor(ScriptedBackend(responses=["ok"]), critic).step(
        [Message("user", content="x")], privileged="secret"
    )
    Supervisor(ScriptedBackend(responses=["ok"]), critic, privileged=True).step(
        [Message("user", content="x")], privileged="secret"
    )
    assert [r.privileged for r in critic.seen] == [None, "secret"]


class ReviseOnce:
    """Asks for one revision of each turn's first proposal, then approves."""

    def __init__(self):
        self.calls = 0

    def review(self, requests):
        self.calls += 1
        verdict = "revise" if self.calls % 2 == 1 else "approve"
        return [Review(verdict, "try again" if verdict == "revise" else "") for _ in requests]


class Recording(TransformersBackend):
    """A local actor that keeps every completion it returns (its public record of tokens fed)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.completions = []

    def complete(self, *args, **kwargs):
        out = super().complete(*args, **kwargs)
        self.completions.extend(out)
        return out


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_local_actor_set_up_by_fabric_keeps_its_cache_across_a_revised_turn(precision):
    # Depends on the token record under supervision (issue 15 point 8, `backends/hf.py`): after a
    # revised turn the next turn crops the cache to the common prefix instead of re-encoding it all.
    tok = byte_tokenizer()
    model = tiny_causal_lm(tok, "llama", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=0)
    actor = Recording(model, tok, sampling=SamplingParams(max_new_tokens=12))
    sup = Supervisor(actor, ReviseOnce(), accelerator="cpu", precision=precision)
    assert isinstance(actor, HoldsModules) and type(actor.model).__name__ == "_FabricModule"
    msgs = [Message("user", content="hello")]
    first = sup.step(msgs, key="conv", seed=1)
    assert [p.review.verdict for p in first.proposals] == ["revise", "approve"]
    assert first.text == first.proposals[-1].text  # the revised proposal went out
    msgs += [Message("assistant", content=first.text), Message("user", content="and?")]
    start = len(actor.completions)
    sup.step(msgs, key="conv", seed=2)
    turn2 = actor.completions[start]  # the second turn's first proposal
    # only tokens after the kept prefix were fed: the first turn's context survived its rejected proposal
    first_context = len(actor.encode(actor.render(msgs[:1])))
    assert 0 < len(turn2.prompt_ids) <= turn2.num_prompt_tokens - first_context
    sup.end("conv")  # forgets the conversation: the same key now feeds its whole context
    start = len(actor.completions)
    sup.step(msgs, key="conv", seed=2)
    again = actor.completions[start]
    assert len(again.prompt_ids) == again.num_prompt_tokens > turn2.num_prompt_tokens - first_context
    assert all(p.dtype == torch.float32 for p in actor.model.parameters())
