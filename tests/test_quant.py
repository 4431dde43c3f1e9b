"""Dynamic int8 linears (`backends.quant`) for CPU critics: what is replaced, how close, how it fails."""

from __future__ import annotations

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.quant import quantize_linears
from lightning_asym.review import GenerativeCritic, ReviewRequest
from lightning_asym.types import Action, Message, Task

pytest.importorskip("torch.ao.quantization")

TINY = {"hidden_size": 64}


def test_every_linear_is_replaced_and_probabilities_stay_close() -> None:
    torch.manual_seed(0)
    ref = TransformersBackend("tiny", tiny=TINY, dtype="float32").model
    n_linear = sum(type(m) is torch.nn.Linear for m in ref.modules())
    quant = quantize_linears(copy.deepcopy(ref))
    assert n_linear > 0
    assert sum(type(m) is torch.nn.Linear for m in quant.modules()) == 0
    assert sum(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in quant.modules()) == n_linear
    ids = torch.tensor([list(range(5, 40))])
    with torch.no_grad():
        a = torch.softmax(ref(input_ids=ids).logits[0], -1)
        b = torch.softmax(quant(input_ids=ids).logits[0], -1)
    assert not torch.equal(a, b)  # int8 weights and activations: close, not equal
    assert float((a - b).abs().max()) < 0.02


def test_critic_reviews_with_int8_linears() -> None:
    critic = GenerativeCritic(
        "tiny",
        quantize="int8",
        sampling=SamplingParams(max_new_tokens=4, temperature=0.0),
        revise_threshold=0.0,
    )
    assert critic.mode == "score"
    msgs = [Message("system", content="policy"), Message("user", content="cancel my order")]
    task = Task(id="t", split="test", instruction="")
    reviews = critic.review(
        [ReviewRequest(msgs, "ok", Action("respond", {"content": "ok"}), None, task, key=0)]
    )
    assert reviews[0].verdict == "revise" and reviews[0].score is not None and 0.0 <= reviews[0].score <= 1.0


def test_bad_mode_and_misplaced_option_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="quantize must be one of"):
        TransformersBackend("tiny", tiny=TINY, quantize="int4")
    backend = TransformersBackend("tiny", tiny=TINY)
    with pytest.raises(ValueError, match="backend.init_args"):
        GenerativeCritic(backend, quantize="int8")
