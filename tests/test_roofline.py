"""`backends.roofline`: a model's decode costs and the ceiling they set on given hardware."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lightning_asym.backends.roofline import Hardware, ModelCost, decode_ceiling, measure


def test_model_cost_counts_a_tied_gqa_model_by_hand():
    cfg = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    cost = ModelCost.of(model)
    head_dim = 32 // 4
    per_layer = 32 * 32 * 2 + 32 * (2 * head_dim) * 2 + 3 * 32 * 64 + 2 * 32  # q,o; k,v; mlp; 2 norms
    params = 100 * 32 + 3 * per_layer + 32  # one embedding (tied), the layers, the final norm
    assert cost.params == params and cost.weight_bytes == 2 * params
    assert cost.kv_bytes_per_token == 2 * 3 * 2 * head_dim * 2
    assert cost.attn_flops_per_token == 4 * 3 * 4 * head_dim


def test_the_ceiling_is_the_slower_of_memory_and_compute():
    # SmolLM2-135M in bfloat16 on PERF.md's machine (1 thread: 28.9 GB/s, 209 GFLOP/s)
    smollm2 = ModelCost(134_515_008, 269_030_016, 23_040, 4 * 30 * 9 * 64)
    hw = Hardware(28.9e9, 209e9)
    big = decode_ceiling(smollm2, hw, batch=32, context=600)
    flops = 32 * (2 * 134_515_008 + 600 * 4 * 30 * 9 * 64)
    read = 269_030_016 + 32 * 600 * 23_040
    assert big.bound == "compute" and big.step_s == pytest.approx(flops / 209e9)
    assert big.tokens_per_s == pytest.approx(32 / (flops / 209e9))
    assert 640 < big.tokens_per_s < 700  # PERF.md: about 677 tok/s
    small = decode_ceiling(smollm2, hw, batch=1, context=600)
    assert small.bound == "memory"
    assert small.tokens_per_s == pytest.approx(1 / ((269_030_016 + 600 * 23_040) / 28.9e9))
    assert read / 28.9e9 < big.step_s
    with pytest.raises(ValueError, match="batch must be >= 1"):
        decode_ceiling(smollm2, hw, batch=0, context=1)


def test_measure_gives_positive_rates():
    hw = measure(torch.float32, read_mib=8, n=128, repeats=1)
    assert hw.read_bytes_per_s > 1e8 and hw.matmul_flops_per_s > 1e7
