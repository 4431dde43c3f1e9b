"""`tools/bench_train.py --strategy fsdp2`: PPO steps under FSDP2 on 2 CPU processes against 1 process.

Both runs train the same actor and critic on the same fixed rollout batch per process (generated
once here), so each process does the same work: the 2-process run adds what sharding costs
(all-gathers, reduce-scatters) and halves what each process holds. Per rank it reports the step
time, the peak RSS, and the bytes of model state it holds (parameters and AdamW moments, exact,
from the local shards). It also measures the two ways a sharded actor can generate: gathering
its weights for the rollout phase (`models.gathered`, what the jobs do) or keeping a full
inference copy on every rank that is synced after each update (as verl does with its inference
engine): the time of each, and the memory each keeps. Last line: one JSON object.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch


def _env() -> Any:
    from lightning_asym.envs.preferences import PreferencesEnv

    return PreferencesEnv(
        num_aspects=1, prefs_per_aspect=1, num_options=4, num_acceptable=1, max_turns=6, id_style="index"
    )


def _models(env: Any, hidden: int, layers: int) -> tuple[Any, Any]:
    from lightning_asym.actor import ActorModule
    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.critic import CriticModule

    heads = max(hidden // 64, 2)
    actor = ActorModule(
        tiny=dict(arch="llama", tokenizer="bpe", vocab_size=2048, corpus="env", hidden_size=hidden,
                  num_layers=layers, num_heads=heads),
        sampling=SamplingParams(max_new_tokens=16),
    )  # fmt: skip
    critic = CriticModule(
        tiny=dict(arch="gpt2", tokenizer="bpe", vocab_size=1536, corpus="env", hidden_size=hidden // 2,
                  num_layers=layers, num_heads=heads),
        include_system=False,
    )  # fmt: skip
    actor.adapt_to_env(env)
    critic.adapt_to_env(env)
    return actor, critic


def _held_bytes(module: torch.nn.Module, optimizers: list[Any]) -> int:
    """Bytes of parameters and optimizer state this rank holds (local shards of DTensors)."""
    local = lambda t: t.to_local() if hasattr(t, "to_local") else t  # noqa: E731
    n = sum(local(p).numel() * p.element_size() for p in module.parameters())
    for opt in optimizers:
        for state in opt.state.values():
            n += sum(local(v).numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    return n


def _rollout_costs(actor: Any) -> dict[str, float]:
    """Gather for the rollout phase vs a full inference copy synced after each update (times in s)."""
    from lightning_asym.models import gathered

    model = actor.model
    full_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    t0 = time.perf_counter()
    for _ in range(5):
        with gathered(model):
            pass
    gather_s = (time.perf_counter() - t0) / 5
    copy = {n: torch.empty(p.shape, dtype=p.dtype) for n, p in model.named_parameters()}
    t0 = time.perf_counter()
    for _ in range(5):  # what a sync after each update is: every rank all-gathers into its copy
        for n, p in model.named_parameters():
            copy[n].copy_(p.full_tensor() if hasattr(p, "full_tensor") else p.detach())
    sync_s = (time.perf_counter() - t0) / 5
    return {"gather_s": gather_s, "copy_sync_s": sync_s, "full_actor_bytes": full_bytes}


def child(args: Any) -> None:
    """One run (`--world 1` or `2`; Lightning relaunches this command for rank 1)."""
    from lightning import Callback, LightningDataModule, Trainer
    from lightning.pytorch.strategies import ModelParallelStrategy
    from torch.utils.data import DataLoader

    from lightning_asym.jobs import AsymmetricActorCritic
    from lightning_asym.jobs.ppo_args import OptimArgs, PPOArgs
    from lightning_asym.types import Trajectory, read_jsonl

    torch.set_num_threads(args.threads)
    out = Path(args.dir)
    env = _env()
    trajs = read_jsonl(out / "trajs.jsonl", Trajectory)

    class Fixed(LightningDataModule):
        def __init__(self) -> None:
            super().__init__()
            self.env = env

        def train_dataloader(self) -> DataLoader:
            return DataLoader([trajs] * (args.steps + 1), batch_size=None, collate_fn=lambda b: b)

    class Meter(Callback):
        def __init__(self) -> None:
            self.times: list[float] = []

        def on_train_batch_start(self, *a: Any) -> None:
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *a: Any) -> None:
            self.times.append(time.perf_counter() - self.t0)

        def on_train_end(self, trainer: Any, module: Any) -> None:
            report = {
                "step_s": sum(self.times[1:]) / max(len(self.times) - 1, 1),  # the first warms up
                "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "held_state_bytes": _held_bytes(module, [o.optimizer for o in module.optimizers()]),
            }
            if trainer.world_size > 1:
                report.update(_rollout_costs(module.actor))
            (out / f"world{trainer.world_size}_rank{trainer.global_rank}.json").write_text(json.dumps(report))

    actor, critic = _models(env, args.hidden, args.layers)
    module = AsymmetricActorCritic(
        actor,
        critic,
        ppo=PPOArgs(epochs=2, minibatch_size=max(len(trajs) // 2, 1), mask_truncated_turns=False),
        optim=OptimArgs(actor_lr=1e-3, critic_lr=3e-3),
    )
    strategy = ModelParallelStrategy(args.world, 1) if args.world > 1 else "auto"
    Trainer(
        accelerator="cpu",
        devices=args.world,
        strategy=strategy,
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[Meter()],
    ).fit(module, Fixed())


def run(args: Any) -> None:
    """Generate the batch, run 1 then 2 processes, print them side by side and one JSON line."""
    from lightning_asym.rollout import RolloutEngine
    from lightning_asym.types import write_jsonl

    env = _env()
    actor, _ = _models(env, args.hidden, args.layers)
    trajs = RolloutEngine(env, seed=0).collect(env.tasks("train")[: args.batch], actor.backend)
    with tempfile.TemporaryDirectory() as tmp:
        write_jsonl(Path(tmp) / "trajs.jsonl", trajs)
        for world in (1, 2):
            cmd = [sys.executable, str(Path(__file__).parent / "bench_train.py"), "--strategy", "fsdp2"]
            cmd += [
                "--world",
                str(world),
                "--dir",
                tmp,
                "--steps",
                str(args.steps),
                "--batch",
                str(args.batch),
            ]
            cmd += [
                "--threads",
                str(args.threads),
                "--hidden",
                str(args.hidden),
                "--layers",
                str(args.layers),
            ]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            if proc.returncode:
                raise SystemExit(f"the {world}-process run failed:\n{proc.stderr[-4000:]}")
        one = json.loads((Path(tmp) / "world1_rank0.json").read_text())
        two = [json.loads((Path(tmp) / f"world2_rank{r}.json").read_text()) for r in (0, 1)]
    mib = 2**20
    print(f"per process: {len(trajs)} episodes, {args.steps} PPO steps (2 epochs x 2 minibatches)")
    print(f"{'':24}{'1 process':>12}{'FSDP2 rank 0':>14}{'FSDP2 rank 1':>14}")
    for key, unit, scale in (
        ("step_s", "ms", 1000),
        ("held_state_bytes", "MiB", 1 / mib),
        ("peak_rss_bytes", "MiB", 1 / mib),
    ):
        cells = [f"{r[key] * scale:12.1f}" for r in (one, *two)]
        print(f"{key + ' (' + unit + ')':24}{cells[0]}  {cells[1]}  {cells[2]}")
    print(
        f"rollout phase, rank 0: gather {two[0]['gather_s'] * 1000:.1f} ms (full weights held only while "
        f"generating) vs full-copy sync {two[0]['copy_sync_s'] * 1000:.1f} ms per update (+"
        f"{two[0]['full_actor_bytes'] / mib:.1f} MiB held always)"
    )
    print(
        json.dumps(
            {
                "episodes_per_process": len(trajs),
                "steps": args.steps,
                "one_step_s": round(one["step_s"], 4),
                "fsdp2_step_s": [round(r["step_s"], 4) for r in two],
                "step_ratio": round(max(r["step_s"] for r in two) / one["step_s"], 3),
                "one_held_bytes": one["held_state_bytes"],
                "fsdp2_held_bytes": [r["held_state_bytes"] for r in two],
                "held_ratio": round(max(r["held_state_bytes"] for r in two) / one["held_state_bytes"], 3),
                "one_peak_rss_bytes": one["peak_rss_bytes"],
                "fsdp2_peak_rss_bytes": [r["peak_rss_bytes"] for r in two],
                "rollout_gather_s": round(two[0]["gather_s"], 5),
                "rollout_copy_sync_s": round(two[0]["copy_sync_s"], 5),
                "full_actor_bytes": two[0]["full_actor_bytes"],
            }
        )
    )
