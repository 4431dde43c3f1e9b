"""`AsymmetricActorCritic`: PPO for a multi-turn actor with a smaller, differently built critic.

Each training step pulls one batch of fresh episodes from the data module (generated with
the current weights at that moment), then:

1. the critic scores every state s_0..s_T in its own tokens (privileged if configured);
2. turn-level GAE turns the episode's rewards, usually one at the end, into an advantage per
   turn; each generated token of a turn inherits its turn's advantage;
3. several PPO epochs over minibatches of episodes update the actor (clipped policy loss,
   entropy bonus, optional KL to the initial weights) and the critic (clipped value loss),
   each with its own optimiser and learning rate.

With `clone_steps: N` and a `demonstrator` (a scripted policy), the first N steps clone the
demonstrator instead (log-likelihood of its actions in the actor's own tokens), and the
critic fits the demonstrator's returns: a tiny random actor learns the action format there,
and PPO takes over from it. Those returns are the demonstrator's, not the actor's: with
`critic_warmup_steps: K` the next K steps fit only the critic, on the actor's own episodes,
so PPO's first advantages come from values of the policy being trained. (Without it a critic
that learned "every episode succeeds" from an expert gives each of the actor's final turns a
large negative advantage, and PPO quickly learns never to finish an episode.)

With `advantage: grpo` or `rloo` the critic is not used: the baseline is the mean reward of
the other episodes of the same task in the batch (set the data module's `group_size`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from lightning import LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torchmetrics import MeanMetric

from lightning_asym import rl
from lightning_asym.actor import ActorModule
from lightning_asym.backends.scripted import ScriptedBackend, ScriptedPolicy
from lightning_asym.critic import CriticModule
from lightning_asym.jobs.contracts import HasEnv
from lightning_asym.types import Trajectory

ADVANTAGES = ("gae", "grpo", "rloo")


class AsymmetricActorCritic(LightningModule):
    """Train `actor` by PPO with turn-level advantages from `critic`.

    Args:
        actor: the trainable actor (`model.actor.class_path` in YAML).
        critic: the value critic (`model.critic.class_path`); None with `advantage: grpo|rloo`.
        advantage: `gae` (critic), `grpo` or `rloo` (critic-free group baselines).
        gamma / lam: discount and GAE lambda over turns.
        clip_eps: PPO ratio clip; value_clip: clip of the value update (None = unclipped).
        ppo_epochs: passes over each rollout batch; minibatch_size: episodes per update.
        actor_lr / critic_lr: learning rates of the two AdamW optimisers.
        weight_decay: AdamW weight decay for both.
        max_grad_norm: gradient clipping per model (0 = none).
        whiten_advantages: normalise advantages over the batch's generated tokens.
        seed: seeds the minibatch order (with the step number).
        demonstrator: a scripted policy to clone during the first `clone_steps` steps.
        clone_steps: behaviour-cloning steps before PPO (needs `demonstrator`).
        clone_lr: the actor's learning rate while cloning (default: `actor_lr`).
        critic_warmup_steps: steps after cloning that train only the critic, on the actor's
            own episodes (no effect without a critic).
        mask_truncated_turns: take no policy loss on a turn cut off by `max_new_tokens` (as
            DAPO's overlong filtering). Such a turn is no well-formed action, and its tokens,
            sampled far off the policy's usual path, otherwise dominate the gradient of a
            small model and can wreck it within a few updates.
    """

    def __init__(
        self,
        actor: ActorModule,
        critic: CriticModule | None = None,
        advantage: str = "gae",
        gamma: float = 1.0,
        lam: float = 0.95,
        clip_eps: float = 0.2,
        value_clip: float | None = 0.2,
        ppo_epochs: int = 2,
        minibatch_size: int = 4,
        actor_lr: float = 1e-4,
        critic_lr: float = 3e-4,
        weight_decay: float = 0.0,
        max_grad_norm: float = 1.0,
        whiten_advantages: bool = True,
        seed: int = 0,
        demonstrator: ScriptedPolicy | None = None,
        clone_steps: int = 0,
        clone_lr: float | None = None,
        critic_warmup_steps: int = 0,
        mask_truncated_turns: bool = True,
    ) -> None:
        super().__init__()
        if advantage not in ADVANTAGES:
            raise ValueError(f"model.advantage must be one of {ADVANTAGES}, got {advantage!r}")
        if advantage == "gae" and critic is None:
            raise ValueError("model.advantage: gae needs model.critic; use grpo or rloo to train without one")
        if critic_warmup_steps < 0:
            raise ValueError(f"model.critic_warmup_steps must be >= 0, got {critic_warmup_steps}")
        if ppo_epochs < 1 or minibatch_size < 1:
            raise ValueError("model.ppo_epochs and model.minibatch_size must be >= 1")
        self.actor = actor
        self.critic = critic if advantage == "gae" else None
        self.advantage = advantage
        self.gamma, self.lam, self.clip_eps, self.value_clip = gamma, lam, clip_eps, value_clip
        self.ppo_epochs, self.minibatch_size = ppo_epochs, minibatch_size
        self.actor_lr, self.critic_lr, self.weight_decay = actor_lr, critic_lr, weight_decay
        self.max_grad_norm, self.whiten_advantages, self.seed = max_grad_norm, whiten_advantages, seed
        if clone_steps and demonstrator is None:
            raise ValueError("model.clone_steps needs model.demonstrator (a scripted policy to clone)")
        self.clone_steps = clone_steps
        self.clone_lr = clone_lr if clone_lr is not None else actor_lr
        self.critic_warmup_steps = critic_warmup_steps
        self.mask_truncated_turns = mask_truncated_turns
        self._warned_all_cut = False
        self._demo = ScriptedBackend(policy=demonstrator) if demonstrator is not None else None
        self.automatic_optimization = False
        self.val_success, self.val_reward = MeanMetric(), MeanMetric()

    # ------------------------------------------------------------------ wiring
    def setup(self, stage: str) -> None:
        # tiny models may train their tokenizer on the env's texts; done before optimisers
        # are built and before a checkpoint is restored
        dm = self.trainer.datamodule if self._trainer is not None else None
        if isinstance(dm, HasEnv):
            self.actor.adapt_to_env(dm.env)
            if self.critic is not None:
                self.critic.adapt_to_env(dm.env)

    def on_fit_start(self) -> None:
        if "16-mixed" == str(self.trainer.precision):
            raise ValueError(
                "trainer.precision: 16-mixed is not supported (its loss scaler needs one optimizer "
                "step per backward); use bf16-mixed or 32-true"
            )

    def rollout_policy(self, stage: str) -> tuple[Any, None]:
        """Who plays the data module's episodes: the demonstrator for training batches while
        cloning, the actor otherwise; PPO trains without a reviewer."""
        if stage == "train" and self.global_step < self.clone_steps:
            return self._demo, None
        return self.actor.backend, None

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        def adamw(module: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
            params = [p for p in module.parameters() if p.requires_grad]
            return torch.optim.AdamW(params, lr=lr, weight_decay=self.weight_decay)

        opts = [adamw(self.actor.model, self.actor_lr)]
        if self.critic is not None:
            opts.append(adamw(self.critic, self.critic_lr))
        return opts

    def _privileged(self, trajs: list[Trajectory]) -> list[str]:
        dm = self.trainer.datamodule
        return [dm.env.privileged(dm.env.get_task(t.split, t.task_id)) for t in trajs]

    # ------------------------------------------------------------------ training
    def training_step(self, dataloader_iter: Iterator) -> None:
        t0 = time.perf_counter()
        trajs, _, _ = next(dataloader_iter)
        rollout_s = time.perf_counter() - t0
        cloning = self.global_step < self.clone_steps
        actor_opt = self.optimizers()[0] if isinstance(self.optimizers(), list) else self.optimizers()
        for group in actor_opt.param_groups:
            group["lr"] = self.clone_lr if cloning else self.actor_lr
        if cloning:
            return self._clone_step(trajs, rollout_s)
        if self.clone_steps and self.global_step == self.clone_steps:
            # the KL anchor is the policy cloning produced, not the random initial weights
            # (a resumed run gets the anchor back from the checkpoint's state dict)
            self.actor.reset_reference()
        # after cloning, the critic may first learn the actor's own values while the actor waits
        train_actor = self.critic is None or self.global_step >= self.clone_steps + self.critic_warmup_steps
        tokens = self.actor.tokens(trajs, mask_truncated=self.mask_truncated_turns)
        if self.mask_truncated_turns and not bool(tokens.gen_mask.any()) and not self._warned_all_cut:
            self._warned_all_cut = True
            rank_zero_warn(
                "every turn of this rollout batch ran to sampling.max_new_tokens without an end "
                "token, and model.mask_truncated_turns takes no policy loss on such turns, so the "
                "actor does not learn from it. Raise model.actor.init_args.sampling.max_new_tokens, "
                "clone a demonstrator first (model.clone_steps), or set "
                "model.mask_truncated_turns: false."
            )
        with torch.no_grad():
            # the actor's forward pass is needed only when the actor is updated
            old_logprobs = self.actor.token_logprobs(tokens)[0] if train_actor else None
            turn_adv, returns, old_values, turn_mask = self._advantages(trajs)
        adv = rl.broadcast_turns_to_tokens(turn_adv, tokens.turn_index, tokens.gen_mask)
        if self.whiten_advantages:
            adv = rl.masked_whiten(adv, tokens.gen_mask.float())
        stats: dict[str, list[torch.Tensor]] = {}
        n = len(trajs)
        # minibatch order from the step number alone, so a resumed run replays it exactly
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.global_step)
        updates = [
            rows
            for _ in range(self.ppo_epochs)
            for rows in torch.randperm(n, generator=gen).split(self.minibatch_size)
        ]
        for u, rows in enumerate(updates):
            mb = tokens.select(rows)
            width = mb.input_ids.shape[1]
            if old_logprobs is not None:
                loss, s = self.actor.loss(mb, old_logprobs[rows, :width], adv[rows, :width], self.clip_eps)
            else:
                loss, s = torch.zeros((), device=self.device), {}
            if self.critic is not None:
                vloss, vs = self._value_loss(
                    [trajs[i] for i in rows.tolist()], old_values[rows], returns[rows], turn_mask[rows]
                )
                loss = loss + vloss
                s.update(vs)
            self._update(loss, last=u == len(updates) - 1)
            for k, v in s.items():
                stats.setdefault(k, []).append(v.detach().float())
        self._log_train(trajs, tokens, stats, returns, old_values, turn_mask, rollout_s)

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
            if self.max_grad_norm > 0:
                self.clip_gradients(opt, gradient_clip_val=self.max_grad_norm, gradient_clip_algorithm="norm")
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
        log["train/return"] = torch.tensor(sum(t.reward for t in trajs) / n)
        log["train/success"] = torch.tensor(sum(t.success for t in trajs) / n)
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
        adv, returns = rl.turn_gae(rewards, state_values, mask, bootstrap, self.gamma, self.lam)
        return adv, returns, state_values, mask

    def _critic_values(self, trajs: list[Trajectory], width: int) -> torch.Tensor:
        """V(s_0..) of each trajectory, zero-padded or cut to `[B, width]` (a minibatch's longest
        episode may be shorter than the batch's)."""
        values, _ = self.critic.values(trajs, self._privileged(trajs) if self.critic.privileged else None)
        if values.shape[1] >= width:
            return values[:, :width]
        return torch.nn.functional.pad(values, (0, width - values.shape[1]))

    def _value_loss(
        self, trajs: list[Trajectory], old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        values = self._critic_values(trajs, mask.shape[1])
        loss, stats = rl.clipped_value_loss(values, old_values, returns, mask, self.value_clip)
        return loss, {"value_loss": loss.detach(), **stats}

    def _log_train(self, trajs, tokens, stats, returns, values, mask, rollout_s) -> None:
        n = len(trajs)
        log = {f"train/{k}": torch.stack(v).mean() for k, v in stats.items()}
        log["train/kl"] = log.pop("train/kl_ref", log.get("train/approx_kl", torch.tensor(0.0)))
        log["train/return"] = torch.tensor(sum(t.reward for t in trajs) / n)
        log["train/success"] = torch.tensor(sum(t.success for t in trajs) / n)
        log["train/turns"] = torch.tensor(sum(t.num_turns for t in trajs) / n)
        generated = sum(len(t.completion_ids) for traj in trajs for t in traj.turns)
        log["train/tokens_per_s"] = torch.tensor(generated / max(rollout_s, 1e-9))
        turns = [t for traj in trajs for t in traj.turns if t.completion_ids]
        log["train/truncated_turns"] = torch.tensor(
            sum(self.actor.cut_off(t) for t in turns) / max(len(turns), 1)
        )
        if self.critic is not None:
            log["train/explained_variance"] = rl.explained_variance(values, returns, mask)
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

    # ------------------------------------------------------------------ exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # plain types only: Lightning loads checkpoints with weights_only=True
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        checkpoint["rng"] = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": (kind, keys.tolist(), pos, has_gauss, cached),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            kind, keys, pos, has_gauss, cached = rng["numpy"]
            np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
