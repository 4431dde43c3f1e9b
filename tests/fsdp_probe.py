"""The FSDP2 probe (tests/test_fsdp.py): a few PPO steps of `AsymmetricActorCritic` on fixed
trajectories, then a few `CriticSFT` steps (full, then LoRA) on fixed examples, under Lightning's
`ModelParallelStrategy` on 2 gloo processes, or on 1 process.

    python tests/fsdp_probe.py OUT_DIR WORLD     # WORLD 2: Lightning relaunches this script for rank 1

The trajectories are synthetic and of one shape (turns, token counts, message lengths), so a mean
over one rank's tokens averaged over the ranks equals the mean over the global batch: the 2-rank
run and a 1-rank run of the union batch take the same gradient, and their weights must agree.
Rank r trains on half r of each step's global batch. Written to OUT_DIR:
`rank{r}.json` (local and global parameter counts, rollout checks), `weights.pt` (the full
trained weights, gathered on rank 0), and the critics `CriticSFT` saved, `sft_full/`, `sft_lora/`.
"""

from __future__ import annotations

import json
import os
import random
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from lightning import Callback, LightningDataModule, Trainer
from torch.utils.data import DataLoader, IterableDataset

from lightning_asym.actor import ActorModule
from lightning_asym.backends.base import SamplingParams
from lightning_asym.critic import CriticModule
from lightning_asym.envs.preferences import PreferencesEnv
from lightning_asym.jobs import AsymmetricActorCritic
from lightning_asym.jobs.critic_data import CriticDataModule
from lightning_asym.jobs.critic_sft import CriticSFT
from lightning_asym.jobs.ppo_args import OptimArgs, PPOArgs
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import Action, CriticExample, Message, Trajectory, Turn, write_jsonl

ACTOR = {"arch": "llama", "tokenizer": "byte", "hidden_size": 32, "num_layers": 2, "num_heads": 2}
CRITIC = {"arch": "gpt2", "tokenizer": "byte", "hidden_size": 16, "num_layers": 2, "num_heads": 2}
PER_RANK, STEPS, TURNS, PROMPT, COMPLETION = 4, 3, 2, 6, 5


def synthetic(step: int, row: int) -> Trajectory:
    """Episode `row` of step `step`'s global batch: random tokens and texts of a fixed shape."""
    rng = random.Random(f"{step}/{row}")
    text = lambda n: "".join(rng.choice("abcdefgh ") for _ in range(n))  # noqa: E731
    turns = [
        Turn(
            index=t,
            text=text(8),
            action=None,
            observation=[Message("user", text(8))],
            reward=float(rng.random() < 0.5) if t == TURNS - 1 else 0.0,
            prompt_ids=[rng.randrange(3, 250) for _ in range(PROMPT)],
            completion_ids=[rng.randrange(3, 250) for _ in range(COMPLETION)],
        )
        for t in range(TURNS)
    ]
    messages = [Message("user", text(12))]
    for t in turns:
        messages += [Message("assistant", t.text), *t.observation]
    return Trajectory(task_id=f"{step}/{row}", messages=messages, turns=turns, reward=turns[-1].reward)


class FixedBatches(IterableDataset):
    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def __iter__(self):
        for step in range(STEPS):
            yield [synthetic(step, r) for r in self.rows]


class FixedData(LightningDataModule):
    """Each rank's share of the global batch of every step: rows rank*PER_RANK.. of 2*PER_RANK."""

    def train_dataloader(self) -> DataLoader:
        rank, world = self.trainer.global_rank, self.trainer.world_size
        per = 2 * PER_RANK // world
        return DataLoader(FixedBatches(list(range(rank * per, (rank + 1) * per))), batch_size=None)


def rollouts(actor: ActorModule, rank: int, phase: Any = nullcontext) -> list[Trajectory]:
    """This rank's episodes inside `phase` (the module's `rollout_phase`): ranks play different
    tasks with different token budgets, so a forward that needed the other rank would hang."""
    env = PreferencesEnv(num_aspects=1, prefs_per_aspect=1, num_options=4, max_turns=2, num_train=8)
    sampling = SamplingParams(max_new_tokens=6 + 6 * rank, temperature=1.0)
    engine = RolloutEngine(env, None, sampling, seed=7)
    specs = [(t, 0) for t in env.tasks("train")[rank::2][: 1 + rank]]
    with phase():
        return engine.run(specs, actor.backend, None)


def tokens(trajs: list[Trajectory]) -> list[list[int]]:
    return [t.completion_ids for tr in trajs for t in tr.turns]


def local_numel(module: torch.nn.Module) -> tuple[int, int]:
    """(parameters held by this rank, parameters of the whole model)."""
    held = whole = 0
    for p in module.parameters():
        held += p.to_local().numel() if hasattr(p, "to_local") else p.numel()
        whole += p.numel()
    return held, whole


class Probe(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out

    def on_train_start(self, trainer: Trainer, module: AsymmetricActorCritic) -> None:
        rank = trainer.global_rank
        phase = lambda: module.rollout_phase("train")  # noqa: E731
        first, again = rollouts(module.actor, rank, phase), rollouts(module.actor, rank, phase)
        plain = rollouts(ActorModule(tiny=ACTOR), rank)  # the same seeded weights, never sharded
        report = {
            "actor": local_numel(module.actor.model),
            "reference": local_numel(module.actor.reference),
            "critic": local_numel(module.critic),
            "tokens": [t.completion_ids for tr in first for t in tr.turns],
            "repeat_equal": [tr.turns for tr in first] == [tr.turns for tr in again],
            "plain_equal": [t.completion_ids for tr in first for t in tr.turns]
            == [t.completion_ids for tr in plain for t in tr.turns],
            "sharded": type(module.actor.model).__name__,
        }
        (self.out / f"rank{rank}.json").write_text(json.dumps(report))

    def on_train_end(self, trainer: Trainer, module: AsymmetricActorCritic) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = module.state_dict()
        if trainer.world_size > 1:  # a collective: every rank takes part and gets the full weights
            full = get_model_state_dict(module, options=StateDictOptions(full_state_dict=True))
        if trainer.is_global_zero:
            torch.save({k: v.detach().cpu() for k, v in full.items()}, self.out / "weights.pt")
        # after the updates, rollouts are those of an unsharded actor with the trained weights
        # (no KV cache computed with the weights before the updates may survive)
        rank = trainer.global_rank
        trained = rollouts(module.actor, rank, lambda: module.rollout_phase("train"))
        plain = ActorModule(tiny=ACTOR)
        prefix = "actor.model."
        plain.model.load_state_dict({k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)})
        report = json.loads((self.out / f"rank{rank}.json").read_text())
        reference = rollouts(plain, rank)
        report["trained_plain_equal"] = tokens(trained) == tokens(reference)
        # sampled tokens rarely move with small updates; their log-probs do
        report["trained_logprob_gap"] = max(
            abs(a - b) for x, y in zip(trained, reference) for s, t in zip(x.turns, y.turns)
            for a, b in zip(s.logprobs, t.logprobs)
        )  # fmt: skip
        (self.out / f"rank{rank}.json").write_text(json.dumps(report))


def module(world: int) -> AsymmetricActorCritic:
    per = 2 * PER_RANK // world
    return AsymmetricActorCritic(
        actor=ActorModule(tiny=ACTOR, kl_coef=0.1),
        critic=CriticModule(tiny=CRITIC, include_system=False),
        ppo=PPOArgs(epochs=2, minibatch_size=per, mask_truncated_turns=False),
        optim=OptimArgs(actor_lr=1e-3, critic_lr=1e-3),
    )


def sft_examples() -> list[CriticExample]:
    """Critic examples in pairs of one verdict (approve, approve, revise, revise, ...) with equal-length
    texts: read in order, every rank's batch holds one of each, as many answer tokens as any other."""
    rng = random.Random(0)
    # no spaces: the answer's feedback has its whitespace normalised, which would change its length
    text = lambda n: "".join(rng.choice("abcdefgh") for _ in range(n))  # noqa: E731
    out = []
    for i in range(4 * STEPS):
        revise = (i // 2) % 2 == 1
        out.append(
            CriticExample(
                f"t{i}",
                [Message("user", text(20)), Message("assistant", text(10)), Message("user", text(20))],
                action=Action("respond", {"content": text(12)}),
                verdict="revise" if revise else "approve",
                feedback=text(30) if revise else "",
            )
        )
    return out


class InOrder(CriticDataModule):
    """Train batches in file order: rank r reads examples r, r+2, ... (Lightning's own distributed
    sampler would shuffle a train loader), so the ranks' batches of a step make the one-process batch."""

    def train_dataloader(self) -> DataLoader:
        from torch.utils.data import DistributedSampler

        examples = self._split("train")
        t = self.trainer
        order = DistributedSampler(examples, num_replicas=t.world_size, rank=t.global_rank, shuffle=False)
        return DataLoader(examples, batch_size=self.batch_size, sampler=order, collate_fn=list)  # type: ignore[arg-type]


def trainer(world: int, steps: int, callbacks: list[Callback]) -> Trainer:
    from lightning.pytorch.strategies import ModelParallelStrategy

    strategy = ModelParallelStrategy(world, 1) if world > 1 else "auto"  # data, tensor parallel sizes
    return Trainer(
        accelerator="cpu",
        devices=world,
        strategy=strategy,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        use_distributed_sampler=False,  # FixedData and InOrder give each rank its share
        callbacks=callbacks,
    )


def run(out: Path, world: int) -> None:
    torch.manual_seed(0)
    trainer(world, STEPS, [Probe(out)]).fit(module(world), FixedData())
    data = out / f"sft_data_{os.getpid()}"  # each process writes its own copy
    write_jsonl(data / "train.jsonl", sft_examples())
    for method in ("full", "lora"):
        critic = CriticSFT(
            tiny=ACTOR,
            method=method,
            lora={"r": 4, "alpha": 8, "dropout": 0.0},
            lr=3e-3,
            include_policy=False,
            save_dir=str(out / f"sft_{method}"),
        )
        trainer(world, STEPS, []).fit(critic, InOrder(str(data), batch_size=4 // world))


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]))
