"""`AsymmetricActorCritic`: PPO for a multi-turn actor with a smaller, differently built critic.

Each training step pulls one batch of fresh episodes from the data module (generated with
the current weights at that moment), then:

1. the critic scores every state s_0..s_T in its own tokens (privileged if configured: the
   text each trajectory recorded when its episode started, `Trajectory.privileged`);
2. turn-level GAE turns the episode's rewards, usually one at the end, into an advantage per
   turn; each generated token of a turn inherits its turn's advantage;
3. several PPO epochs over minibatches of episodes update the actor (clipped policy loss,
   entropy bonus, optional KL to the initial weights) and the critic (clipped value loss),
   each with its own optimiser and learning rate.

`phase()` says what a step does (`ppo_args.PhaseArgs`). With `phases.clone_steps: N` and a
`demonstrator` (a scripted policy), the first N steps clone the demonstrator instead
(log-likelihood of its actions in the actor's own tokens; its episodes are logged as
`train/demo_return` and `train/demo_success`), and the critic fits the demonstrator's returns: a
tiny random actor learns the action format there, and PPO takes over from it. Those returns
are the demonstrator's, not the actor's: with `phases.critic_warmup_steps: K` the next K steps
fit only the critic, on the actor's own episodes, so PPO's first advantages come from values of
the policy being trained. (Without it a critic that learned "every episode succeeds" from an
expert gives each of the actor's final turns a large negative advantage, and PPO quickly
learns never to finish an episode.)

With `advantage: grpo` or `rloo` the critic is not used: the baseline is the mean reward of
the other episodes of the same task in the batch (set the data module's `group_size`).

Both models are built once in `configure_model`, and sharded there with FSDP2 under Lightning's
`ModelParallelStrategy`; each rollout batch then runs on gathered actor weights (`rollout_phase`).
See docs/scale.md.

Checkpoints carry the run's model config as hyperparameters, so
`AsymmetricActorCritic.load_from_checkpoint(ckpt)` rebuilds the module, and `export(dir)` writes
the actor and the critic as plain transformers directories (`tools/export.py`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, get_args

import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric

from lightning_asym import models, rl
from lightning_asym.actor import ActorModule
from lightning_asym.backends.scripted import ScriptedBackend, ScriptedPolicy
from lightning_asym.critic import CriticModule
from lightning_asym.jobs import ppo_card
from lightning_asym.jobs.contracts import HasEnv
from lightning_asym.jobs.ppo_args import Advantage, OptimArgs, Phase, PhaseArgs, PPOArgs, as_args
from lightning_asym.types import Trajectory


class AsymmetricActorCritic(LightningModule):
    """Train `actor` by PPO with turn-level advantages from `critic`.

    Args:
        actor: the trainable actor (`model.init_args.actor`, an `ActorModule`).
        critic: the value critic (`model.init_args.critic`, a `CriticModule`); null with
            `advantage: grpo` or `rloo`.
        advantage: where advantages come from: `gae` (turn-level GAE from the critic), `grpo`
            or `rloo` (critic-free group baselines over the data module's `group_size`).
        demonstrator: a scripted policy the actor clones during `phases.clone_steps`.
        ppo: the PPO update of each rollout batch (clip, epochs, minibatches, GAE).
        optim: the actor's and the critic's AdamW optimisers.
        phases: behaviour cloning and critic warm-up before PPO.
        seed: seeds the minibatch order (with the step number).
    """

    def __init__(
        self,
        actor: ActorModule,
        critic: CriticModule | None = None,
        advantage: Advantage = "gae",
        demonstrator: ScriptedPolicy | None = None,
        ppo: PPOArgs = PPOArgs(),  # noqa: B008  (frozen in use: never mutated)
        optim: OptimArgs = OptimArgs(),  # noqa: B008
        phases: PhaseArgs = PhaseArgs(),  # noqa: B008
        seed: int = 0,
    ) -> None:
        super().__init__()
        if advantage not in get_args(Advantage):
            raise ValueError(
                f"model.init_args.advantage must be one of {get_args(Advantage)}, got {advantage!r}"
            )
        if advantage == "gae" and critic is None:
            raise ValueError(
                "model.init_args.advantage: gae needs model.init_args.critic; use grpo or rloo to train without one"
            )
        self.ppo = as_args(PPOArgs, ppo, "ppo")
        self.optim = as_args(OptimArgs, optim, "optim")
        self.phases = as_args(PhaseArgs, phases, "phases")
        if self.phases.clone_steps and demonstrator is None:
            raise ValueError(
                "model.init_args.phases.clone_steps needs model.init_args.demonstrator (a scripted policy to clone)"
            )
        # what load_from_checkpoint rebuilds the module from
        ppo_card.save_hparams(self, {"advantage": advantage, "seed": seed})
        self.actor = actor
        self.critic = critic if advantage == "gae" else None
        self.advantage = advantage
        self.seed = seed
        self._warned_all_cut = False
        self._demo = ScriptedBackend(policy=demonstrator) if demonstrator is not None else None
        self._corpus: list[str] | None = None  # the env texts tiny tokenizers were trained on
        self._trained: dict[str, Any] = {}  # what a loaded checkpoint says about its training
        self.automatic_optimization = False
        self.val_success, self.val_reward = MeanMetric(), MeanMetric()

    # ------------------------------------------------------------------ wiring
    def phase(self, step: int | None = None) -> Phase:
        """What training step `step` (default: the current `global_step`) does."""
        step = self.global_step if step is None else step
        return self.phases.phase(step, has_critic=self.critic is not None)

    def setup(self, stage: str) -> None:
        # tiny models may train their tokenizer on the env's texts; done before optimisers
        # are built and before a checkpoint is restored
        dm = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(dm, HasEnv):
            modules = [m for m in (self.actor, self.critic) if m is not None]
            # kept for checkpoints, so load_from_checkpoint rebuilds the same tokenizers without the env
            if self._corpus is None and any(m.corpus_from_env for m in modules):
                self._corpus = list(dm.env.corpus())
            for m in modules:
                m.adapt_to_env(dm.env)

    def configure_model(self) -> None:
        """Build the actor and the critic (once), and shard both under `ModelParallelStrategy`."""
        modules = [m for m in (self.actor, self.critic) if m is not None]
        for m in modules:
            m.configure_model()
        mesh = self.device_mesh
        if mesh is not None:
            dp = models.data_parallel_mesh(mesh)
            policy = models.shard_policy(self.trainer.precision)
            for m in modules:
                m.shard(dp, policy)

    def rollout_phase(self, stage: str) -> AbstractContextManager[None]:
        """Around each rollout batch (`RolloutDataModule`): a sharded actor's weights gathered
        (`ActorModule.generating`), unless the demonstrator plays it (cloning)."""
        if stage == "train" and self.phase() is Phase.CLONE:
            return nullcontext()
        return self.actor.generating()

    def on_fit_start(self) -> None:
        if "16-mixed" == str(self.trainer.precision):
            raise ValueError(
                "trainer.precision: 16-mixed is not supported (its loss scaler needs one optimizer "
                "step per backward); use bf16-mixed or 32-true"
            )

    def rollout_policy(self, stage: str) -> tuple[Any, None]:
        """Who plays the data module's episodes: the demonstrator for training batches while
        cloning, the actor otherwise; PPO trains without a reviewer."""
        if stage == "train" and self.phase() is Phase.CLONE:
            return self._demo, None
        return self.actor.backend, None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        def adamw(module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
            params = [p for p in module.parameters() if p.requires_grad]
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.optim.weight_decay)

        opts = [adamw(self.actor.model, self.optim.actor_lr)]
        if self.critic is not None:
            opts.append(adamw(self.critic, self.optim.critic_lr))
        return opts

    # ------------------------------------------------------------------ training
    def training_step(self, dataloader_iter: Iterator) -> None:
        self._forget_last_step_metrics()
        phase = self.phase()
        t0 = time.perf_counter()
        trajs, _, _ = next(dataloader_iter)
        rollout_s = time.perf_counter() - t0
        actor_opt = self.optimizers()[0] if isinstance(self.optimizers(), list) else self.optimizers()
        clone_lr = self.phases.clone_lr if self.phases.clone_lr is not None else self.optim.actor_lr
        for group in actor_opt.param_groups:
            group["lr"] = clone_lr if phase is Phase.CLONE else self.optim.actor_lr
        if phase is Phase.CLONE:
            return self._clone_step(trajs, rollout_s)
        if self.global_step > 0 and self.phase(self.global_step - 1) is Phase.CLONE:
            # the KL anchor is the policy cloning produced, not the random initial weights
            # (a resumed run gets the anchor back from the checkpoint's state dict)
            self.actor.reset_reference()
        # in critic warm-up the critic learns the actor's own values while the actor waits
        train_actor = phase is Phase.PPO
        ppo = self.ppo
        tokens = self.actor.tokens(trajs, mask_truncated=ppo.mask_truncated_turns)
        if ppo.mask_truncated_turns and not bool(tokens.gen_mask.any()) and not self._warned_all_cut:
            self._warned_all_cut = True
            rank_zero_warn(
                "every turn of this rollout batch ran to sampling.max_new_tokens without an end "
                "token, and model.init_args.ppo.mask_truncated_turns takes no policy loss on such turns, "
                "so the actor does not learn from it. Raise model.actor.init_args.sampling.max_new_tokens, "
                "clone a demonstrator first (model.init_args.phases.clone_steps), or set "
                "model.init_args.ppo.mask_truncated_turns: false."
            )
        with torch.no_grad():
            # the actor's forward pass is needed only when the actor is updated
            old_logprobs = self.actor.token_logprobs(tokens)[0] if train_actor else None
            turn_adv, returns, old_values, turn_mask = self._advantages(trajs)
        adv = rl.broadcast_turns_to_tokens(turn_adv, tokens.turn_index, tokens.gen_mask)
        if ppo.whiten_advantages:  # over the global batch: every process's tokens
            adv = rl.masked_whiten(adv, tokens.gen_mask.float(), sum_over=self._sum_over_processes())
        # per statistic: each minibatch's value and how many tokens or turns it was taken over
        stats: dict[str, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
        n = len(trajs)
        # minibatch order from the step number alone, so a resumed run replays it exactly
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)
        updates = [
            rows
            for _ in range(ppo.epochs)
            for rows in torch.randperm(n, generator=gen).split(ppo.minibatch_size)
        ]
        for u, rows in enumerate(updates):
            mb = tokens.select(rows)
            width = mb.input_ids.shape[1]
            s: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            if old_logprobs is not None:
                loss, a = self.actor.loss(mb, old_logprobs[rows, :width], adv[rows, :width], ppo.clip_eps)
                s.update({k: (v, mb.gen_mask.sum()) for k, v in a.items()})
            else:
                loss = torch.zeros((), device=self.device)
            if self.critic is not None:
                vloss, vs = self._value_loss(
                    [trajs[i] for i in rows.tolist()], old_values[rows], returns[rows], turn_mask[rows]
                )
                loss = loss + vloss
                s.update({k: (v, turn_mask[rows].sum()) for k, v in vs.items()})
            self._update(loss, last=u == len(updates) - 1)
            for k, (v, count) in s.items():
                values, counts = stats.setdefault(k, ([], []))
                values.append(v.detach().float())
                counts.append(count.detach().float())
        self._log_train(trajs, tokens, stats, returns, old_values, turn_mask, rollout_s)

    def _sum_over_processes(self) -> Any:
        """A sum over the data-parallel processes (None on one), for statistics of the global batch."""
        if self._trainer is None or self.trainer.world_size == 1:
            return None
        return lambda t: self.trainer.strategy.reduce(t, reduce_op="sum")

    def _forget_last_step_metrics(self) -> None:
        """Log only what this step measures. Lightning keeps a step metric in its results until
        the epoch ends and logs it again at every later step, frozen at its last value; the train
        stream is one endless epoch, so `train/bc_loss` went on after cloning, and a statistic a
        step could not measure would repeat the previous step's."""
        results = self.trainer._results if self._trainer is not None else None
        if results is not None:
            results.reset(metrics=False, fx="training_step")

    def _update(self, loss: torch.Tensor, last: bool) -> None:
        """Backward, clip and step both optimisers. Lightning counts every LightningOptimizer.step
        as a global step, so only the `last` update of a rollout batch steps the actor through it
        (the others step the wrapped optimisers directly): global_step == rollout batches."""
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        for opt in opts:
            opt.zero_grad()
        self.manual_backward(loss)
        for k, opt in enumerate(opts):
            if self.optim.max_grad_norm > 0:
                self.clip_gradients(
                    opt, gradient_clip_val=self.optim.max_grad_norm, gradient_clip_algorithm="norm"
                )
            if k == 0 and last:
                opt.step()
            else:
                opt.optimizer.step()

    def _clone_step(self, trajs: list[Trajectory], rollout_s: float) -> None:
        """One behaviour-cloning update on the demonstrator's episodes (and a critic fit)."""
        tools = self.trainer.datamodule.env.tool_schemas
        for t in trajs:
            self.actor.teacher_force(t, tools)
        tokens = self.actor.tokens(trajs)
        logprobs, _ = self.actor.token_logprobs(tokens)
        loss = -rl.masked_mean(logprobs, tokens.gen_mask.float())
        stats = {"bc_loss": loss.detach()}
        if self.critic is not None:
            with torch.no_grad():
                _, returns, old_values, mask = self._advantages(trajs)
            vloss, vs = self._value_loss(trajs, old_values, returns, mask)
            loss = loss + vloss
            stats.update(vs)
        self._update(loss, last=True)
        log = {f"train/{k}": v for k, v in stats.items()}
        n = len(trajs)
        # the demonstrator's episodes, not the actor's: named apart so the actor's curves start at PPO
        log["train/demo_return"] = torch.tensor(sum(t.reward for t in trajs) / n)
        log["train/demo_success"] = torch.tensor(sum(t.success for t in trajs) / n)
        self.log_dict(log, on_step=True, on_epoch=False, batch_size=n)

    def _advantages(self, trajs: list[Trajectory]) -> tuple[torch.Tensor, ...]:
        """Turn advantages, returns, old values and the turn mask, all `[B, T]`."""
        T = max(t.num_turns for t in trajs)
        rewards = torch.zeros(len(trajs), T, device=self.device)
        mask = torch.zeros(len(trajs), T, device=self.device)
        for i, t in enumerate(trajs):
            rewards[i, : t.num_turns] = torch.tensor(t.turn_rewards, device=self.device)
            mask[i, : t.num_turns] = 1
        if self.critic is None:
            ids = {tid: k for k, tid in enumerate(sorted({t.task_id for t in trajs}))}
            groups = torch.tensor([ids[t.task_id] for t in trajs], device=self.device)
            ep_adv = rl.group_advantages(rewards.sum(1), groups, mode=self.advantage)
            adv = ep_adv.unsqueeze(1) * mask
            return adv, rewards, torch.zeros_like(rewards), mask
        values = self._critic_values(trajs, T + 1)
        last = torch.tensor([t.num_turns for t in trajs], device=self.device)
        truncated = torch.tensor([t.truncated for t in trajs], device=self.device)
        bootstrap = torch.where(
            truncated,
            values.gather(1, last.unsqueeze(1)).squeeze(1),
            torch.zeros_like(last, dtype=values.dtype),
        )
        state_values = values[:, :T] * mask
        adv, returns = rl.turn_gae(rewards, state_values, mask, bootstrap, self.ppo.gamma, self.ppo.lam)
        return adv, returns, state_values, mask

    def _critic_values(self, trajs: list[Trajectory], width: int) -> torch.Tensor:
        """V(s_0..) of each trajectory, zero-padded or cut to `[B, width]` (a minibatch's longest
        episode may be shorter than the batch's). A privileged critic reads the text each
        episode recorded when it started."""
        privileged = [t.privileged for t in trajs] if self.critic.privileged else None
        values, _ = self.critic.values(trajs, privileged)
        if values.shape[1] >= width:
            return values[:, :width]
        return torch.nn.functional.pad(values, (0, width - values.shape[1]))

    def _value_loss(
        self, trajs: list[Trajectory], old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = self._critic_values(trajs, mask.shape[1])
        loss, stats = rl.clipped_value_loss(values, old_values, returns, mask, self.ppo.value_clip)
        return loss, {"value_loss": loss.detach(), **stats}

    def _log_train(self, trajs, tokens, stats, returns, values, mask, rollout_s) -> None:
        n = len(trajs)
        log = ppo_card.train_metrics(self, trajs, stats, returns, values, mask, rollout_s)
        self.log_dict(log, on_step=True, on_epoch=False, batch_size=n, prog_bar=False)
        self.log("train/success_pb", log["train/success"], prog_bar=True, logger=False, batch_size=n)

    # ------------------------------------------------------------------ validation
    def validation_step(self, batch: list[Trajectory], batch_idx: int) -> None:
        self.val_success.update(torch.tensor([float(t.success) for t in batch]))
        self.val_reward.update(torch.tensor([t.reward for t in batch]))
        self.log("val/success", self.val_success, on_epoch=True, prog_bar=True, batch_size=len(batch))
        self.log("val/reward", self.val_reward, on_epoch=True, batch_size=len(batch))

    def on_train_start(self) -> None:
        # PPO without dropout: the first update's ratio is exactly 1, and a resumed run
        # computes exactly what the uninterrupted one did.
        self.actor.eval()
        if self.critic is not None:
            self.critic.eval()
        # validation at step 0, so every curve starts from the untrained level
        if self.global_step != 0 or self.trainer.datamodule is None or not self.trainer.limit_val_batches:
            return
        succ, rew = [], []
        with torch.no_grad():
            for batch in self.trainer.datamodule.val_dataloader():
                succ += [float(t.success) for t in batch]
                rew += [t.reward for t in batch]
        metrics = {"val/success": sum(succ) / len(succ), "val/reward": sum(rew) / len(rew)}
        for logger in self.loggers:
            logger.log_metrics(metrics, step=0)
        self.initial_val = metrics

    # ------------------------------------------------------------------ checkpoints and export
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ppo_card.save_state(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        ppo_card.load_state(self, checkpoint)

    def export(self, path: str | Path) -> dict[str, Path]:
        """Write the actor to `path/actor` and the critic (if any) to `path/critic`, each a plain
        transformers directory with its tokenizer and a README.md model card."""
        path = Path(path)
        card = ppo_card.training_card(self, ppo_card.training_record(self))
        out = {"actor": self.actor.export(path / "actor", card)}
        if self.critic is not None:
            out["critic"] = self.critic.export(path / "critic", card)
        return out
