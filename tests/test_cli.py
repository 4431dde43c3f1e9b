"""End-to-end runs of the real `lightning-asym` command with tiny models."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import run_cli

from lightning_asym.types import Trajectory, read_jsonl

CONF = Path(__file__).parent / "conf"


def test_cli_test_with_a_tiny_local_actor(tmp_path):
    run_cli("test", "--config", str(CONF / "test_tiny.yaml"), cwd=tmp_path)
    (run,) = (tmp_path / "runs" / "tiny").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "test/success",
        "test/reward",
        "test/pass^1",
        "test/pass^2",
        "test/actor_tokens",
        "test/turns",
    ):
        assert key in metrics, key
    assert 0.0 <= metrics["test/success"] <= 1.0
    assert metrics["test/actor_tokens"] > 0
    trajs = read_jsonl(run / "trajectories" / "test.jsonl", Trajectory)
    assert len(trajs) == 4 * 2  # tasks x trials
    assert all(t.turns and t.turns[0].completion_ids for t in trajs)
    assert list(run.glob("events.out.tfevents.*"))


def _initial_actor() -> dict:
    from lightning_asym.actor import ActorModule

    tiny = {"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 1, "num_heads": 2}
    return ActorModule(tiny=tiny).model.state_dict()


def _actor_weights(ckpt: Path) -> dict:
    import torch

    state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("actor.model.")}


def test_cli_fit_trains_the_actor_and_resumes(tmp_path):
    import torch

    run_cli("fit", "--config", str(CONF / "fit_tiny.yaml"), "--trainer.max_steps", "2", cwd=tmp_path)
    (run,) = (tmp_path / "runs" / "fit_tiny").iterdir()
    ckpts = sorted((run / "checkpoints").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["epoch=0-step=1.ckpt", "epoch=0-step=2.ckpt"]
    assert list(run.glob("events.out.tfevents.*"))
    metrics = json.loads((run / "metrics.json").read_text())
    for key in (
        "train/return",
        "train/policy_loss",
        "train/value_loss",
        "train/kl",
        "train/entropy",
        "train/explained_variance",
        "train/tokens_per_s",
        "val/success",
        "val/reward",
    ):
        assert key in metrics, key
    assert metrics["global_step"] == 2

    # the actor's weights changed between the initial model and step 2
    from lightning_asym.actor import ActorModule

    init = ActorModule(
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 1, "num_heads": 2}
    )
    trained = _actor_weights(ckpts[-1])
    changed = [
        k for k, v in init.model.state_dict().items() if not torch.equal(v, trained[f"actor.model.{k}"])
    ]
    assert changed, "no actor weight changed after two PPO steps"

    # a run resumed from step 1 reaches the same weights at step 2 as the uninterrupted run
    run_cli(
        "fit",
        "--config",
        str(CONF / "fit_tiny.yaml"),
        "--trainer.max_steps",
        "2",
        "--ckpt_path",
        str(ckpts[0]),
        cwd=tmp_path,
    )
    # the resumed run logs into the run it resumes (one run, one directory of curves)
    assert list((tmp_path / "runs" / "fit_tiny").iterdir()) == [run]
    assert len(list(run.glob("events.out.tfevents.*"))) == 2
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["trainer"]["logger"]["init_args"]["version"] == 0  # an int: the bar's v_num reads 0
    resumed = _actor_weights(run / "checkpoints" / "epoch=0-step=2-v1.ckpt")
    for k, v in trained.items():
        torch.testing.assert_close(resumed[k], v, rtol=0, atol=0, msg=f"resumed weights differ at {k}")


def test_cli_fit_critic_warmup_trains_only_the_critic_first(tmp_path):
    import torch

    run_cli(
        "fit", "--config", str(CONF / "fit_tiny.yaml"), "--trainer.max_steps", "3",
        "--model.init_args.phases.critic_warmup_steps", "2", cwd=tmp_path,
    )  # fmt: skip
    (run,) = (tmp_path / "runs" / "fit_tiny").iterdir()
    states = [
        torch.load(run / "checkpoints" / f"epoch=0-step={k}.ckpt", weights_only=False)["state_dict"]
        for k in (1, 2, 3)
    ]
    from lightning_asym.actor import ActorModule

    init = ActorModule(
        tiny={"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 1, "num_heads": 2}
    )
    actor0 = {f"actor.model.{k}": v for k, v in init.model.state_dict().items()}

    def actor(sd):
        return {k: v for k, v in sd.items() if k.startswith("actor.model.")}

    def critic(sd):
        return {k: v for k, v in sd.items() if k.startswith("critic.")}

    def same(a, b):
        return all(torch.equal(a[k], b[k]) for k in a)

    # steps 1-2 fit the critic on the actor's own episodes and leave the actor untouched ...
    assert same(actor(states[0]), actor0) and same(actor(states[1]), actor0)
    assert not same(critic(states[0]), critic(states[1]))
    # ... and step 3 is a PPO update of both
    assert not same(actor(states[2]), actor0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["global_step"] == 3 and "train/policy_loss" in metrics


def test_cli_fit_warns_when_every_turn_is_cut_off(tmp_path):
    # a random byte-level actor (seed 0) ends none of this batch's turns within 3 tokens: with
    # the mask on there is nothing to learn from, and the user is told what to change
    proc = run_cli(
        "fit", "--config", str(CONF / "fit_tiny.yaml"), "--trainer.max_steps", "1",
        "--model.init_args.ppo.mask_truncated_turns", "true",
        "--model.init_args.actor.init_args.sampling.max_new_tokens", "3", cwd=tmp_path,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert (
        "ran to sampling.max_new_tokens" in out and "model.init_args.ppo.mask_truncated_turns: false" in out
    )
    (run,) = (tmp_path / "runs" / "fit_tiny").iterdir()
    assert json.loads((run / "metrics.json").read_text())["train/truncated_turns"] == 1.0


def test_cli_test_retail_oracle_reports_pass_hat_k(tmp_path):
    config = Path(__file__).parent.parent / "configs" / "retail" / "oracle.yaml"
    proc = run_cli(
        "test",
        "--config",
        str(config),
        "--data.init_args.num_test_tasks",
        "6",
        "--data.init_args.batch_size",
        "12",
        "--trainer.enable_progress_bar",
        "false",
        cwd=tmp_path,
    )
    (run,) = (tmp_path / "runs" / "retail_oracle").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    for k in range(1, 5):
        assert 0.0 <= metrics[f"test/pass^{k}"] <= 1.0
    # pass^k can only fall as k grows
    assert (
        metrics["test/pass^1"] >= metrics["test/pass^2"] >= metrics["test/pass^3"] >= metrics["test/pass^4"]
    )
    assert metrics["test/pass^1"] == pytest.approx(metrics["test/success"])
    assert len(read_jsonl(run / "trajectories" / "test.jsonl", Trajectory)) == 6 * 4
    # one table of the figures: SupervisedAgent's grouped one, not Lightning's flat copy after it
    assert proc.stdout.count("pass^1") == 1 and "Test metric" not in proc.stdout


@pytest.mark.slow
def test_cli_fit_ddp_two_cpu_processes_keep_weights_in_sync(tmp_path):
    """DDP on the CPU (gloo, 2 processes): ranks see different rollouts but, with gradients
    all-reduced, end with identical actor weights."""
    import torch

    os.environ["DDP_PROBE_DIR"] = str(tmp_path)
    try:
        run_cli(
            "fit",
            "--config",
            str(CONF / "fit_tiny.yaml"),
            "--trainer.strategy",
            "ddp",
            "--trainer.devices",
            "2",
            "--trainer.max_steps",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.callbacks+=ddp_probe.SaveRankWeights",
            cwd=tmp_path,
        )
    finally:
        os.environ.pop("DDP_PROBE_DIR")
    w0, w1 = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    assert torch.load(tmp_path / "meta0.pt")["world_size"] == 2
    init = _initial_actor()
    assert any(not torch.equal(v, w0[k]) for k, v in init.items()), "training changed nothing"
    for k in w0:
        torch.testing.assert_close(
            w0[k], w1[k], msg=f"ranks disagree on {k}: gradients were not synchronised"
        )


def test_console_script_exits_zero(tmp_path):
    """The installed `lightning-asym` entry point exits 0 on success (its return value is the exit code)."""
    import shutil

    exe = shutil.which("lightning-asym") or str(Path(sys.executable).parent / "lightning-asym")
    proc = subprocess.run(
        [
            exe,
            "test",
            "--config",
            str(Path(__file__).parent.parent / "configs/preferences/random.yaml"),
            "--data.init_args.num_test_tasks",
            "2",
            "--data.init_args.test_trials",
            "1",
            "--trainer.enable_progress_bar",
            "false",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
