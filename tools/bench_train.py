"""One PPO step of `AsymmetricActorCritic` (in a Lightning Trainer) against a bare PyTorch loop.

Both update the same tiny actor and critic (the quickstart's models) on the same fixed batch
of rollouts, with the same epochs, minibatches, losses and optimisers; the bare loop is the
whole algorithm written inline with torch ops. The ratio is the cost of our structure
(LightningModule, manual optimisation, logging) per step. Last line: one JSON object.

    python tools/bench_train.py [--steps 10] [--batch 16]

`--strategy fsdp2` compares instead 2 CPU processes under FSDP2 (Lightning's ModelParallelStrategy)
with 1 process: step time, peak memory and model state held per rank, side by side, and the cost
of gathering the sharded actor for rollouts against a synced full copy (tools/bench_fsdp2.py):

    python tools/bench_train.py --strategy fsdp2 [--steps 6] [--batch 8] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings

import torch


def make_models(env):
    from lightning_asym.actor import ActorModule
    from lightning_asym.backends.base import SamplingParams
    from lightning_asym.critic import CriticModule

    actor = ActorModule(
        tiny=dict(
            arch="llama",
            tokenizer="bpe",
            vocab_size=2048,
            corpus="env",
            hidden_size=64,
            num_layers=2,
            num_heads=4,
        ),
        sampling=SamplingParams(max_new_tokens=16),
    )
    critic = CriticModule(
        tiny=dict(
            arch="gpt2",
            tokenizer="bpe",
            vocab_size=1536,
            corpus="env",
            hidden_size=32,
            num_layers=2,
            num_heads=2,
        ),
        include_system=False,
    )
    actor.adapt_to_env(env)
    critic.adapt_to_env(env)
    return actor.eval(), critic.eval()


def bare_loop(
    actor, critic, trajs, steps, epochs=2, mb=8, lr_a=1e-3, lr_c=3e-3, clip=0.2, gamma=1.0, lam=0.95
):
    """The same PPO update, written inline: no Lightning, no helper modules."""
    model, head_model = actor.model, critic
    opt_a = torch.optim.AdamW(model.parameters(), lr=lr_a, weight_decay=0.0)
    opt_c = torch.optim.AdamW(head_model.parameters(), lr=lr_c, weight_decay=0.0)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        tok = actor.tokens(trajs)
        ids, attn, gen, turn_idx = tok.input_ids, tok.attention_mask, tok.gen_mask.bool(), tok.turn_index

        def logp(rows, ids=ids, attn=attn, gen=gen):
            h = model.base_model(input_ids=ids[rows], attention_mask=attn[rows]).last_hidden_state[:, :-1]
            need = gen[rows][:, 1:]
            lp = torch.log_softmax(model.get_output_embeddings()(h[need]).float(), -1)
            return lp.gather(-1, ids[rows][:, 1:][need].unsqueeze(-1)).squeeze(-1), need

        B = len(trajs)
        T = max(t.num_turns for t in trajs)
        with torch.no_grad():
            old, _ = logp(torch.arange(B))
            values, _ = critic.values(trajs, [t.privileged for t in trajs])
            rewards = torch.zeros(B, T)
            mask = torch.zeros(B, T)
            for i, t in enumerate(trajs):
                rewards[i, : t.num_turns] = torch.tensor(t.turn_rewards)
                mask[i, : t.num_turns] = 1
            v = values[:, :T] * mask
            nxt = torch.cat(
                [
                    values[:, 1 : T + 1] * torch.tensor([[float(t.truncated)] for t in trajs]),
                    torch.zeros(B, 1),
                ],
                1,
            )[:, :T]
            adv = torch.zeros(B, T)
            last = torch.zeros(B)
            for k in reversed(range(T)):  # turn-level GAE, explicit loop over turns
                v_next = torch.where(mask[:, k + 1] > 0, v[:, k + 1], nxt[:, k]) if k + 1 < T else nxt[:, k]
                delta = rewards[:, k] + gamma * v_next - v[:, k]
                last = (delta + gamma * lam * last * (mask[:, k + 1] if k + 1 < T else 0)) * mask[:, k]
                adv[:, k] = last
            ret = adv + v
            tok_adv_full = torch.where(turn_idx >= 0, adv.gather(1, turn_idx.clamp(min=0)), torch.zeros(()))
            flat_adv = tok_adv_full[:, 1:][gen[:, 1:]]
            flat_adv = (flat_adv - flat_adv.mean()) / (flat_adv.std() + 1e-8)
        # per-row offsets into the flat token arrays
        counts = gen[:, 1:].sum(1)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
        gen_perm = torch.Generator().manual_seed(step)
        for _ in range(epochs):
            for rows in torch.randperm(B, generator=gen_perm).split(mb):
                new, _ = logp(rows)
                sel = torch.cat([torch.arange(offsets[r], offsets[r + 1]) for r in rows.tolist()])
                ratio = (new - old[sel]).exp()
                a = flat_adv[sel]
                pl = -torch.min(ratio * a, ratio.clamp(1 - clip, 1 + clip) * a).mean()
                sub = [trajs[r] for r in rows.tolist()]
                vals, _ = critic.values(sub, [t.privileged for t in sub])
                m = mask[rows]
                vv = vals[:, :T] * m
                vc = v[rows] + (vv - v[rows]).clamp(-clip, clip)
                vl = 0.5 * (torch.max((vv - ret[rows]) ** 2, (vc - ret[rows]) ** 2) * m).sum() / m.sum()
                opt_a.zero_grad()
                opt_c.zero_grad()
                (pl + vl).backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                torch.nn.utils.clip_grad_norm_(head_model.parameters(), 1.0)
                opt_a.step()
                opt_c.step()
        times.append(time.perf_counter() - t0)
    return times


def module_steps(actor, critic, env, trajs, steps):
    from lightning import Callback, LightningDataModule, Trainer
    from torch.utils.data import DataLoader

    from lightning_asym.jobs import AsymmetricActorCritic
    from lightning_asym.jobs.ppo_args import OptimArgs, PPOArgs

    class Fixed(LightningDataModule):
        def __init__(self):
            super().__init__()
            self.env = env

        def train_dataloader(self):
            return DataLoader([trajs] * (steps + 1), batch_size=None, collate_fn=lambda b: b)

    class Clock(Callback):
        times: list[float] = []

        def on_train_batch_start(self, *a):
            self.t0 = time.perf_counter()

        def on_train_batch_end(self, *a):
            self.times.append(time.perf_counter() - self.t0)

    module = AsymmetricActorCritic(
        actor,
        critic,
        ppo=PPOArgs(epochs=2, minibatch_size=8, mask_truncated_turns=False),  # the bare loop masks nothing
        optim=OptimArgs(actor_lr=1e-3, critic_lr=3e-3),
    )
    clock = Clock()
    trainer = Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=Fixed())
    return clock.times


def main() -> None:
    warnings.filterwarnings("ignore")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strategy", choices=["none", "fsdp2"], default="none")
    ap.add_argument("--hidden", type=int, default=256, help="fsdp2: the actor's hidden size (critic: half)")
    ap.add_argument("--layers", type=int, default=4, help="fsdp2: layers of each model")
    ap.add_argument("--world", type=int, default=0, help=argparse.SUPPRESS)  # fsdp2's own runs
    ap.add_argument("--dir", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.strategy == "fsdp2":
        import bench_fsdp2  # beside this file

        return bench_fsdp2.child(args) if args.world else bench_fsdp2.run(args)

    from lightning_asym.envs.preferences import PreferencesEnv
    from lightning_asym.rollout import RolloutEngine

    env = PreferencesEnv(
        num_aspects=1, prefs_per_aspect=1, num_options=4, num_acceptable=1, max_turns=6, id_style="index"
    )
    actor, critic = make_models(env)
    trajs = RolloutEngine(env, seed=0).collect(env.tasks("train")[: args.batch], actor.backend)
    n_tokens = sum(len(t.completion_ids) + len(t.prompt_ids) for tr in trajs for t in tr.turns)
    print(
        f"batch: {len(trajs)} episodes, {n_tokens} actor tokens; {args.steps} steps each (2 epochs x 2 minibatches)"
    )

    bare = bare_loop(copy.deepcopy(actor), copy.deepcopy(critic), trajs, args.steps)
    ours = module_steps(copy.deepcopy(actor), copy.deepcopy(critic), env, trajs, args.steps)
    # the first step of each warms caches and allocators
    bare_s = sum(bare[1:]) / max(len(bare) - 1, 1)
    ours_s = sum(ours[1:]) / max(len(ours) - 1, 1)
    print(f"bare PyTorch loop : {bare_s * 1000:8.1f} ms/step")
    print(f"AsymmetricActorCritic: {ours_s * 1000:8.1f} ms/step")
    print(
        json.dumps(
            {
                "module_step_s": round(ours_s, 4),
                "bare_step_s": round(bare_s, 4),
                "ratio": round(ours_s / bare_s, 3),
                "episodes": len(trajs),
                "steps": args.steps,
            }
        )
    )


if __name__ == "__main__":
    main()
