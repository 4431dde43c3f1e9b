from __future__ import annotations

import copy

import pytest
import torch
from toy_env import GuessEnv, guess_policy

from lightning_asym.backends import ScriptedBackend
from lightning_asym.critic import CriticModule
from lightning_asym.rollout import RolloutEngine


@pytest.fixture(scope="module")
def trajs():
    env = GuessEnv(num_tasks=4)
    return RolloutEngine(env, seed=0).collect(env.tasks("test"), ScriptedBackend(policy=guess_policy))


def test_state_boundaries(trajs):
    t = trajs[0]
    # system + user open; each turn adds the assistant message and its observations
    assert t.state_boundaries() == [2, 4, 6]


def test_view_ends_at_each_state(trajs):
    critic = CriticModule(tiny={"arch": "gpt2", "tokenizer": "bpe", "vocab_size": 300})
    ids, ends = critic.view(trajs[0])
    assert len(ends) == trajs[0].num_turns + 1
    tok = critic.tokenizer
    assert tok.decode(ids[: ends[0] + 1]).rstrip().endswith("Guess my number!")
    assert tok.decode(ids[: ends[1] + 1]).rstrip().endswith(trajs[0].messages[3].content)
    assert ends[-1] == len(ids) - 1


def test_privileged_header_only_when_enabled(trajs):
    secret = "the number is 7"
    plain = CriticModule(tiny={"tokenizer": "byte"}, privileged=False)
    priv = CriticModule(tiny={"tokenizer": "byte"}, privileged=True)
    assert secret not in plain.tokenizer.decode(plain.view(trajs[0], secret)[0])
    assert secret in priv.tokenizer.decode(priv.view(trajs[0], secret)[0])


@pytest.mark.parametrize("tiny", [{"arch": "llama"}, {"arch": "gpt2", "tokenizer": "bpe", "vocab_size": 300}])
def test_values_never_see_the_future(trajs, tiny):
    critic = CriticModule(tiny=tiny).eval()
    changed = copy.deepcopy(trajs[0])
    changed.messages[-1].content = "something completely different " * 3
    with torch.no_grad():
        v, mask = critic.values([trajs[0], trajs[1]])
        w, _ = critic.values([changed, trajs[1]])
    assert mask.sum().item() == trajs[0].num_turns + trajs[1].num_turns + 2
    torch.testing.assert_close(v[0, :-1], w[0, :-1])  # earlier states unchanged
    assert not torch.allclose(v[0, -1], w[0, -1])
    torch.testing.assert_close(v[1], w[1])


def test_encoder_critic_gets_one_sequence_per_state(trajs):
    from transformers import BertConfig, BertModel

    critic = CriticModule(tiny={"tokenizer": "byte"})
    tok = critic.tokenizer
    critic.backbone = BertModel(
        BertConfig(
            vocab_size=len(tok),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
        )
    ).eval()
    critic.value_head = torch.nn.Linear(32, 1)
    critic.causal = False
    changed = copy.deepcopy(trajs[0])
    changed.messages[-1].content = "other"
    with torch.no_grad():
        v, _ = critic.values([trajs[0]])
        w, _ = critic.values([changed])
    torch.testing.assert_close(v[0, :-1], w[0, :-1])


def test_long_conversations_keep_the_latest_tokens(trajs):
    critic = CriticModule(tiny={"tokenizer": "byte"}, max_length=40, privileged=True)
    ids, ends = critic.view(trajs[0], "hidden")
    assert len(ids) == 40 and ends[-1] == 39 and min(ends) >= 0
