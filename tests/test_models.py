"""`lightning_asym.models`: one model spec, one dtype parser and one logits-at-positions for actor and critic."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lightning_asym.actor import ActorModule
from lightning_asym.backends.tiny import byte_tokenizer, tiny_causal_lm
from lightning_asym.critic import CriticModule
from lightning_asym.models import ModelSpec, hidden_at, logits_at

TINY = {"arch": "llama", "tokenizer": "byte", "hidden_size": 16, "num_layers": 1, "num_heads": 2}


@pytest.mark.parametrize("dtype", ["bf16", "bfloat16", torch.bfloat16])
def test_actor_and_critic_parse_dtypes_alike(dtype) -> None:
    assert next(ActorModule(tiny=TINY, dtype=dtype).model.parameters()).dtype == torch.bfloat16
    assert next(CriticModule(tiny=TINY, dtype=dtype).backbone.parameters()).dtype == torch.bfloat16
    assert next(CriticModule(tiny=TINY).backbone.parameters()).dtype == torch.float32


def test_unknown_dtype_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"critic\.dtype: unknown dtype 'float8'; use one of"):
        CriticModule(tiny=TINY, dtype="float8")
    with pytest.raises(ValueError, match=r"actor\.dtype"):
        ActorModule(tiny=TINY, dtype="half-ish")


def test_logits_and_hidden_at_positions_match_a_full_forward() -> None:
    tok = byte_tokenizer()
    lm = tiny_causal_lm(tok, "qwen2", hidden_size=32, num_layers=2, num_heads=4, seed=5).eval()
    ids = torch.randint(3, 200, (3, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    rows, cols = torch.tensor([0, 1, 2, 2]), torch.tensor([0, 8, 5, 11])
    with torch.no_grad():
        full = lm(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        torch.testing.assert_close(logits_at(lm, ids, mask, rows, cols), full.logits[rows, cols])
        hidden = hidden_at(lm.base_model, ids, mask, rows[:, None], cols[:, None])
    assert hidden.shape == (4, 1, 32)
    torch.testing.assert_close(hidden[:, 0], full.hidden_states[-1][rows, cols])


def test_actor_logprobs_are_those_of_the_full_logits() -> None:
    actor = ActorModule(tiny=TINY).eval()
    eos = actor.tokenizer.eos_token_id
    from lightning_asym.types import Trajectory, Turn

    turn = Turn(index=0, text="", action=None, prompt_ids=[70, 71, 72], completion_ids=[73, 74, eos])
    batch = actor.tokens([Trajectory(task_id="t", turns=[turn])])
    with torch.no_grad():
        lp, ent = actor.token_logprobs(batch, with_entropy=True)
        full = torch.log_softmax(actor.model(batch.input_ids).logits.float(), -1)
    ids = batch.input_ids[0].tolist()
    for p in (3, 4, 5):
        assert lp[0, p].item() == pytest.approx(full[0, p - 1, ids[p]].item(), abs=1e-5)
    assert lp[0, :3].abs().sum() == 0 and ent[0, 3] > 0


class Corpus:
    def corpus(self) -> list[str]:
        return ["the hotel is near the station", "the restaurant is near the hotel"] * 20


def test_spec_and_corpus_from_env_shared_by_actor_and_critic() -> None:
    spec = ModelSpec("tiny", tiny={"tokenizer": "bpe", "corpus": "env", "vocab_size": 300})
    assert spec.corpus_from_env and spec.tiny_options() == {"tokenizer": "bpe", "vocab_size": 300}
    assert spec.tiny_options(["a b"])["corpus"] == ["a b"]
    tiny = {"arch": "llama", "tokenizer": "bpe", "corpus": "env", "vocab_size": 300, "hidden_size": 16}
    for module in (ActorModule(tiny=tiny), CriticModule(tiny=tiny)):
        before = len(module.tokenizer("the hotel is near the station")["input_ids"])
        module.adapt_to_env(Corpus())
        after = module.tokenizer("the hotel is near the station")["input_ids"]
        assert len(after) < before  # the env's phrases became fewer tokens
        module.adapt_to_env(Corpus())  # once only: a later stage keeps the trained weights
        assert module.tokenizer("the hotel is near the station")["input_ids"] == after
    plain = ActorModule(tiny=TINY)
    assert not plain.corpus_from_env
    tok = plain.tokenizer
    plain.adapt_to_env(Corpus())
    assert plain.tokenizer is tok


def test_models_are_built_once_late_and_idempotently(monkeypatch) -> None:
    """`__init__` builds nothing; the env's texts come first, then one build in `configure_model`
    (a `corpus: env` tokenizer used to mean a first build without it, thrown away)."""
    loads: list[object] = []
    load = ModelSpec.load
    monkeypatch.setattr(
        ModelSpec, "load", lambda self, corpus=None: loads.append(corpus) or load(self, corpus)
    )
    tiny = {"arch": "llama", "tokenizer": "bpe", "corpus": "env", "vocab_size": 300, "hidden_size": 16}
    for cls in (ActorModule, CriticModule):
        loads.clear()
        module = cls(tiny=tiny)
        assert not loads and not list(module.parameters())
        module.adapt_to_env(Corpus())
        assert not loads  # the texts are kept for the build
        module.configure_model()
        module.configure_model()
        assert len(loads) == 1 and loads[0] == Corpus().corpus()
        assert list(module.parameters())
    lazy = ActorModule(tiny=TINY)
    assert lazy.model is lazy.backend.model  # outside a Trainer, the first use builds it
    assert not ActorModule(tiny=TINY).built
