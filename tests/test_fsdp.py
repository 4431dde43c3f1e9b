"""FSDP2 through Lightning's `ModelParallelStrategy` on 2 CPU processes (gloo): the code GPUs run.

The slow tests start real processes: the probe (`tests/fsdp_probe.py`, PPO steps on fixed
trajectories) and the `lightning-asym fit --config configs/fsdp_cpu.yaml` command.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from cli_helpers import cli_env, run_cli

ROOT = Path(__file__).parent.parent
CONFIGS = ROOT / "configs"
# what configs/fsdp.yaml (GPUs) may change from configs/fsdp_cpu.yaml (the promise)
ALLOWED = {
    "trainer.accelerator",
    "trainer.precision",
    "trainer.devices",
    "trainer.strategy.init_args.data_parallel_size",  # the device count again
    "model.init_args.actor.init_args.model",
    "model.init_args.actor.init_args.tiny",
    "model.init_args.critic.init_args.model",
    "model.init_args.critic.init_args.tiny",
}


def _flat(tree: object, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict) and not prefix.endswith(".tiny"):  # tiny options compare as one value
        out: dict[str, object] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: tree}


def test_gpu_and_cpu_fsdp_configs_differ_only_in_accelerator_precision_devices_and_model_size():
    cpu = _flat(yaml.safe_load((CONFIGS / "fsdp_cpu.yaml").read_text()))
    gpu = _flat(yaml.safe_load((CONFIGS / "fsdp.yaml").read_text()))
    differ = {k for k in cpu.keys() | gpu.keys() if cpu.get(k) != gpu.get(k)}
    assert differ <= ALLOWED, f"configs/fsdp.yaml and configs/fsdp_cpu.yaml also differ in {differ - ALLOWED}"
    assert {"trainer.accelerator", "trainer.precision", "trainer.devices"} <= differ
    for cfg in (cpu, gpu):
        assert cfg["trainer.strategy.class_path"] == "lightning.pytorch.strategies.ModelParallelStrategy"
        assert cfg["trainer.strategy.init_args.data_parallel_size"] == cfg["trainer.devices"]
        assert cfg["trainer.strategy.init_args.tensor_parallel_size"] == 1


@pytest.mark.slow
def test_fsdp2_ppo_and_critic_sft_match_one_process_with_half_the_parameters_per_rank(tmp_path):
    """3 PPO steps on 2 processes equal 3 steps of one process on the union batch; each rank holds
    about half of every model; the gathered actor's rollouts are those of an unsharded copy; and
    3 CriticSFT steps, full and LoRA, save the critic one process would (gathered on rank 0)."""
    import fsdp_probe

    two, one = tmp_path / "two", tmp_path / "one"
    two.mkdir()
    one.mkdir()
    # the one-process reference runs in a fresh process too: in the test process, state left by
    # earlier tests (threads, RNG draws) made its LoRA run differ from the sharded one in CI
    for out, world in ((two, "2"), (one, "1")):
        proc = subprocess.run(
            [sys.executable, str(Path(fsdp_probe.__file__)), str(out), world],
            cwd=tmp_path,
            env=cli_env(),
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]

    initial = fsdp_probe.module(1)
    initial.configure_model()
    start = initial.state_dict()
    sharded, single = torch.load(two / "weights.pt"), torch.load(one / "weights.pt")
    assert sharded.keys() == single.keys() == start.keys()
    assert max((single[k] - start[k]).abs().max().item() for k in start) > 1e-3, "training changed nothing"
    for k in single:
        torch.testing.assert_close(sharded[k], single[k], rtol=1e-4, atol=1e-5, msg=f"{k} differs")

    ranks = [json.loads((two / f"rank{r}.json").read_text()) for r in (0, 1)]
    for name in ("actor", "reference", "critic"):
        held = [r[name][0] for r in ranks]
        whole = ranks[0][name][1]
        assert sum(held) == whole, name  # every parameter on exactly one rank
        assert all(abs(h - whole / 2) <= 0.02 * whole for h in held), (name, held, whole)
    for r in ranks:
        assert r["sharded"].startswith("FSDP")
        assert r["repeat_equal"] and r["plain_equal"]  # deterministic, and as unsharded
        # after updates too: no KV cache computed with the older weights is reused
        assert r["trained_plain_equal"] and r["trained_logprob_gap"] < 1e-4, r["trained_logprob_gap"]
    # the ranks generated different amounts (no collective per token, or one would have waited)
    assert sum(map(len, ranks[0]["tokens"])) != sum(map(len, ranks[1]["tokens"]))

    from safetensors.torch import load_file

    from lightning_asym.backends.tiny import build_tiny

    untrained = build_tiny(**fsdp_probe.ACTOR)[0].state_dict()
    for method in ("full", "lora"):  # LoRA: the adapters merged into the saved weights
        sharded, single = (load_file(d / f"sft_{method}" / "model.safetensors") for d in (two, one))
        assert sharded.keys() == single.keys()
        assert max((single[k] - untrained[k]).abs().max().item() for k in single) > 1e-3, method
        for k in single:
            torch.testing.assert_close(sharded[k], single[k], rtol=1e-4, atol=1e-5, msg=f"{method}: {k}")


@pytest.mark.slow
def test_cli_fit_fsdp_cpu_trains_on_two_processes_saves_and_resumes_exactly(tmp_path):
    """`lightning-asym fit --config configs/fsdp_cpu.yaml`: 3 steps saving a distributed checkpoint
    each step; a second run resumed from step 2 reaches step 3 with the same metrics."""
    args = [
        "fit",
        "--config",
        str(CONFIGS / "fsdp_cpu.yaml"),
        "--model.init_args.phases.clone_steps=1",
        "--model.init_args.phases.critic_warmup_steps=1",
        "--data.init_args.batch_size=4",
        "--data.init_args.num_val_tasks=2",
        "--model.init_args.ppo.minibatch_size=4",
        "--trainer.max_steps=3",
        "--trainer.val_check_interval=3",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.callbacks.init_args.every_n_train_steps=1",
        "--trainer.callbacks.init_args.save_top_k=-1",
    ]
    run_cli(*args, cwd=tmp_path)
    run = tmp_path / "runs" / "fsdp" / "version_0"
    first = json.loads((run / "metrics.json").read_text())
    assert first["global_step"] == 3 and "train/policy_loss" in first and "val/success" in first
    ckpt = run / "checkpoints" / "epoch=0-step=2.ckpt"
    # a distributed checkpoint: one shard file per rank, the index, and the rest of the state
    assert ckpt.is_dir() and {p.name for p in ckpt.iterdir()} == {
        "__0_0.distcp",
        "__1_0.distcp",
        ".metadata",
        "meta.pt",
    }

    run_cli(*args, "--ckpt_path", str(ckpt), cwd=tmp_path)
    assert not (tmp_path / "runs" / "fsdp" / "version_1").exists()  # resumed into its own run
    resumed = json.loads((run / "metrics.json").read_text())
    for key in ("train/policy_loss", "train/value_loss", "train/approx_kl", "train/return", "train/entropy"):
        assert resumed[key] == pytest.approx(first[key], rel=1e-6, abs=1e-9), key

    # one file for load_from_checkpoint and export: the full weights of the shards
    sys.path.insert(0, str(ROOT / "tools"))
    from consolidate_checkpoint import consolidate

    from lightning_asym.jobs import AsymmetricActorCritic

    full = consolidate(ckpt)
    assert full.name == "epoch=0-step=2.full.ckpt"
    state = torch.load(full, weights_only=False)["state_dict"]
    loaded = AsymmetricActorCritic.load_from_checkpoint(full).state_dict()
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)
    assert any(k.startswith("critic.") for k in state) and any(".reference." in k for k in state)
