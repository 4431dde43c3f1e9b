"""`ActorModule.tokens`: the actor's view of a batch of episodes."""

from __future__ import annotations

import torch

from lightning_asym.actor import ActorModule
from lightning_asym.types import Trajectory, Turn

TINY = {"arch": "llama", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2}


def test_tokens_mask_truncated_turns_out_of_the_loss() -> None:
    actor = ActorModule(tiny=TINY)
    eos = actor.tokenizer.eos_token_id
    turns = [
        Turn(
            index=0, text="hi", action=None, prompt_ids=[1, 2], completion_ids=[3, eos], logprobs=[-0.1, -0.2]
        ),
        Turn(index=1, text="cut", action=None, prompt_ids=[4], completion_ids=[5, 6, 7], logprobs=[-1.0] * 3),
    ]
    traj = Trajectory(task_id="t", turns=turns)
    full = actor.tokens([traj])
    masked = actor.tokens([traj], mask_truncated=True)
    assert full.input_ids.tolist() == masked.input_ids.tolist() == [[1, 2, 3, eos, 4, 5, 6, 7]]
    assert full.gen_mask.tolist() == [[0, 0, 1, 1, 0, 1, 1, 1]]
    # the turn cut off by max_new_tokens (no eos) stays in the context but leaves the loss
    assert masked.gen_mask.tolist() == [[0, 0, 1, 1, 0, 0, 0, 0]]
    assert torch.equal(full.turn_index, masked.turn_index)
    assert torch.equal(full.sampled_logprobs, masked.sampled_logprobs)


def test_reset_reference_copies_the_current_weights() -> None:
    actor = ActorModule(tiny=TINY, kl_coef=0.1)
    assert actor.reference is not None
    with torch.no_grad():
        for p in actor.model.parameters():
            p.add_(0.5)
    ref = actor.reference.state_dict()
    assert any(not torch.equal(v, ref[k]) for k, v in actor.model.state_dict().items())
    actor.reset_reference()
    ref = actor.reference.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in actor.model.state_dict().items())
    assert not any(p.requires_grad for p in actor.reference.parameters())
    ActorModule(tiny=TINY).reset_reference()  # no reference kept: nothing to do
