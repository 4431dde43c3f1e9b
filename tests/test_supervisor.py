"""`Supervisor`: supervision of a live conversation outside the Trainer."""

from __future__ import annotations

import pytest
import torch

from lightning_asym import Supervisor
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.scripted import ScriptedBackend
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
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


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_local_actor_set_up_by_fabric_keeps_its_cache_across_turns(precision):
    tok = byte_tokenizer()
    model = tiny_causal_lm(tok, "llama", hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, seed=0)
    actor = TransformersBackend(model, tok)
    sup = Supervisor(actor, NoWrites(), accelerator="cpu", precision=precision)
    assert type(actor.model).__name__ == "_FabricModule"
    msgs = [Message("user", content="hello")]
    first = sup.step(msgs, key="conv", seed=1)
    assert first.proposals and first.proposals[0].review is not None
    assert "conv" in actor._states  # the conversation's KV cache is kept for the next turn
    msgs += [Message("assistant", content=first.text), Message("user", content="and?")]
    sup.step(msgs, key="conv", seed=2)
    sup.end("conv")
    assert "conv" not in actor._states
    assert all(p.dtype == torch.float32 for p in actor.model.parameters())
