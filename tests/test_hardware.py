"""`backends.hardware`: bfloat16 is the default only where the hardware computes it natively."""

from __future__ import annotations

import pytest
import torch

from lightning_asym.backends import hardware
from lightning_asym.backends.hardware import fast_dtype, native_bf16


@pytest.mark.parametrize(
    "avx512_bf16, amx, expected",
    [(False, False, "float32"), (True, False, "bfloat16"), (False, True, "bfloat16")],
)
def test_cpu_dtype_follows_the_instruction_set(monkeypatch, avx512_bf16, amx, expected):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert native_bf16("cpu") is (expected == "bfloat16")
    assert fast_dtype() == expected


def test_cuda_without_a_gpu_is_not_native(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not native_bf16("cuda")
    assert fast_dtype("cuda") == "float32"


def test_generative_critic_loads_a_named_critic_in_the_fast_dtype(monkeypatch):
    from lightning_asym.review import GenerativeCritic

    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": False)
    assert next(GenerativeCritic("tiny").backend.model.parameters()).dtype == torch.float32
    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": True)
    assert next(GenerativeCritic("tiny").backend.model.parameters()).dtype == torch.bfloat16


def test_cli_warns_on_emulated_bf16_precision(monkeypatch, recwarn):
    from lightning_asym.cli import _warn_emulated_bf16

    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": False)
    with pytest.warns(UserWarning, match=r"--trainer\.precision 32-true"):
        _warn_emulated_bf16("bf16-mixed", "cpu")
    _warn_emulated_bf16("32-true", "cpu")
    monkeypatch.setattr(hardware, "native_bf16", lambda device="cpu": True)
    _warn_emulated_bf16("bf16-mixed", "cpu")
    assert not [w for w in recwarn if "precision" in str(w.message)]
