"""The trainable actor: a local causal LM that acts through `TransformersBackend` and learns by PPO.

Rollouts record, per turn, the context tokens new at that turn and the tokens the model
generated. Their concatenation is exactly the sequence the model saw, so training scores the
very tokens that were sampled: no re-rendering, no tokenization drift between turns.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from lightning import LightningModule

from lightning_asym import rl
from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.models import AdaptsToEnv, ModelSpec, gathered, is_sharded, logits_at, shard_blocks
from lightning_asym.types import Trajectory, Turn


@dataclass
class TokenBatch:
    """The actor's view of a batch of trajectories, right-padded to `[B, L]`.

    `gen_mask` is 1 on tokens the actor generated, `turn_index` gives each generated token's
    turn (-1 elsewhere), `sampled_logprobs` are the log-probs recorded at sampling time.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    gen_mask: torch.Tensor
    turn_index: torch.Tensor
    sampled_logprobs: torch.Tensor

    def select(self, rows: torch.Tensor) -> TokenBatch:
        width = int(self.attention_mask[rows].sum(1).max().item())
        return TokenBatch(
            *(
                t[rows, :width]
                for t in (
                    self.input_ids,
                    self.attention_mask,
                    self.gen_mask,
                    self.turn_index,
                    self.sampled_logprobs,
                )
            )
        )


class ActorModule(AdaptsToEnv, LightningModule):
    """A trainable causal LM with its generation backend.

    Args:
        model: `"tiny"`, `"smollm2"`, or a local transformers directory (see `TransformersBackend`).
        tokenizer: tokenizer directory (default: the model's).
        tiny: options of `lightning_asym.backends.tiny.build_tiny` for `model: tiny`; with
            `tokenizer: bpe` and `corpus: env`, the tokenizer is trained on the data module's env.
        sampling: sampling for rollouts.
        kl_coef: weight of the KL penalty to a frozen copy of the initial weights (0 = no copy kept);
            under `AsymmetricActorCritic` with cloning, of the weights cloning ended with.
        kl_estimator: `k1`, `k2` or `k3` (see `rl.kl_penalty`).
        entropy_coef: weight of the entropy bonus.
        max_context: longest conversation in tokens (default: the model's limit).
        dtype: weights dtype ("float32" (default), "bf16"/"bfloat16", "fp16", "auto": a directory's
            own; see `backends.loading.resolve_dtype`).

    The model is built by `configure_model()` (or on first use), not in `__init__`: see `models.AdaptsToEnv`.
    """

    _BUILT = frozenset({"model", "backend", "tokenizer", "reference", "_pad"})

    def __init__(
        self,
        model: str = "tiny",
        tokenizer: str | None = None,
        tiny: dict[str, Any] | None = None,
        sampling: SamplingParams | None = None,
        kl_coef: float = 0.0,
        kl_estimator: str = "k3",
        entropy_coef: float = 0.0,
        max_context: int | None = None,
        dtype: str | None = None,
    ) -> None:
        super().__init__()
        self.kl_coef, self.kl_estimator, self.entropy_coef = kl_coef, kl_estimator, entropy_coef
        self.spec = ModelSpec(model, tokenizer, tiny, dtype, key="actor")
        self._sampling, self._max_context = sampling, max_context
        self._built = False

    def _build(self, corpus: Sequence[str] | None) -> None:
        model, tokenizer = self.spec.load(corpus)
        self.backend = TransformersBackend(
            model, tokenizer, sampling=self._sampling, max_context=self._max_context
        )
        self.model = self.backend.model
        self.tokenizer = self.backend.tokenizer
        self.reference = None
        if self.kl_coef > 0:
            self.reference = copy.deepcopy(self.model).eval().requires_grad_(False)
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def shard(self, mesh: Any, policy: Any) -> None:
        """FSDP2 over `mesh` (`models.shard_blocks`): the model and its KL reference, each block
        then the root, with the mixed precision `policy` (`models.shard_policy`)."""
        self.configure_model()
        shard_blocks(self.model, mesh, policy, lm=True)
        if self.reference is not None:
            shard_blocks(self.reference, mesh, policy, lm=True)

    @contextmanager
    def generating(self) -> Iterator[None]:
        """Around a rollout batch: a sharded model's full weights gathered (`models.gathered`), and
        the backend's KV caches dropped first. Gathered weights are fresh tensors each time, so the
        in-place versions that tell the backend its cached prefixes are stale say nothing."""
        if is_sharded(self.model):
            self.backend.reset()
        with gathered(self.model):
            yield

    def teacher_force(self, traj: Trajectory, tools: list[dict[str, Any]] | None) -> None:
        """Fill `prompt_ids`/`completion_ids` of a trajectory another agent played (a scripted
        demonstrator), exactly as if this actor had generated its assistant messages."""
        render, encode, tok = self.backend.render, self.backend.encode, self.tokenizer
        eos = tok.eos_token_id
        seen = ""
        bounds = traj.state_boundaries()
        for turn, j in zip(traj.turns, bounds):
            prompt = render(traj.messages[:j], True, tools)
            if not prompt.startswith(seen):
                raise ValueError(
                    f"trajectory {traj.task_id}: the chat template is not prefix-preserving at turn "
                    f"{turn.index}; cannot rebuild its tokens"
                )
            turn.prompt_ids = encode(prompt[len(seen) :])
            turn.completion_ids = encode(traj.messages[j].content or "") + [eos]
            turn.logprobs = []
            turn.prefix_len = None
            seen = prompt + tok.decode(
                turn.completion_ids, skip_special_tokens=False, clean_up_tokenization_spaces=False
            )

    def export(self, path: Any, training: str = "") -> Any:
        """Write the actor as a plain transformers directory with its tokenizer and a README.md
        model card (`training`: how it was trained); see `lightning_asym.export`."""
        from lightning_asym.export import export_actor

        return export_actor(self, path, training)

    @torch.no_grad()
    def reset_reference(self) -> None:
        """Make the KL reference a copy of the current weights (e.g. once cloning is over)."""
        if self.reference is not None:
            self.reference.load_state_dict(self.model.state_dict())

    def cut_off(self, turn: Turn) -> bool:
        """Whether a generated turn ran to `max_new_tokens` without an end token."""
        return bool(turn.completion_ids) and turn.completion_ids[-1] not in self.backend.eos_ids

    def tokens(self, trajs: Sequence[Trajectory], mask_truncated: bool = False) -> TokenBatch:
        """Rebuild each episode's token sequence from its turns (see `TokenBatch`).

        `mask_truncated`: the tokens of a turn cut off by `max_new_tokens` (it does not end with
        an eos token) stay in the sequence but leave `gen_mask`, so no loss is taken on them.
        A turn whose context dropped recorded tokens (`Turn.prefix_len`, after a revision under
        supervision) is refused: one sequence per episode could not score it exactly.
        """
        rows = []
        for traj in trajs:
            ids: list[int] = []
            gen: list[int] = []
            turn: list[int] = []
            lps: list[float] = []
            for t in traj.turns:
                if t.prefix_len is not None and t.prefix_len != len(ids):
                    raise ValueError(
                        f"trajectory {traj.task_id} turn {t.index}: the actor's context kept {t.prefix_len} "
                        f"of the {len(ids)} tokens recorded before it (after a revised or fallback turn "
                        "under supervision, or when continued from a prefix recorded elsewhere), so one "
                        "token sequence cannot score it exactly; train on fresh rollouts without a "
                        "reviewer (`rollout_policy` returning no reviewer)"
                    )
                ids += t.prompt_ids
                gen += [0] * len(t.prompt_ids)
                turn += [-1] * len(t.prompt_ids)
                lps += [0.0] * len(t.prompt_ids)
                ids += t.completion_ids
                cut = mask_truncated and self.cut_off(t)
                gen += [0 if cut else 1] * len(t.completion_ids)
                turn += [t.index] * len(t.completion_ids)
                lps += list(t.logprobs) + [0.0] * (len(t.completion_ids) - len(t.logprobs))
            if not ids:
                raise ValueError(
                    f"trajectory {traj.task_id} has no token ids: was it generated by a local model?"
                )
            rows.append((ids, gen, turn, lps))
        width = max(len(r[0]) for r in rows)
        out = [
            torch.full((len(rows), width), fill, dtype=dt)
            for fill, dt in (
                (self._pad, torch.long),
                (0, torch.long),
                (0, torch.long),
                (-1, torch.long),
                (0.0, torch.float),
            )
        ]
        for i, (ids, gen, turn, lps) in enumerate(rows):
            n = len(ids)
            out[0][i, :n] = torch.tensor(ids)
            out[1][i, :n] = 1
            out[2][i, :n] = torch.tensor(gen)
            out[3][i, :n] = torch.tensor(turn)
            out[4][i, :n] = torch.tensor(lps)
        return TokenBatch(*(t.to(self.device) for t in out))

    def token_logprobs(
        self, batch: TokenBatch, with_entropy: bool = False, model: torch.nn.Module | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-prob of every token given its prefix, `[B, L]` (0 at position 0), and optionally
        the policy entropy at generated positions. Logits are computed only where needed."""
        model = model or self.model
        need = batch.gen_mask[:, 1:].bool()
        rows, cols = need.nonzero(as_tuple=True)  # position p predicts token p + 1
        logits = logits_at(model, batch.input_ids, batch.attention_mask, rows, cols).float()
        logp_all = torch.log_softmax(logits, dim=-1)
        picked = logp_all.gather(-1, batch.input_ids[:, 1:][need].unsqueeze(-1)).squeeze(-1)
        logprobs = torch.zeros(batch.input_ids.shape, dtype=picked.dtype, device=picked.device)
        logprobs[:, 1:][need] = picked
        entropy = None
        if with_entropy:
            entropy = torch.zeros_like(logprobs)
            entropy[:, 1:][need] = -(logp_all.exp() * logp_all).sum(-1)
        return logprobs, entropy

    def loss(
        self, batch: TokenBatch, old_logprobs: torch.Tensor, advantages: torch.Tensor, clip_eps: float
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """PPO clipped loss on generated tokens, plus entropy bonus and KL-to-reference penalty."""
        mask = batch.gen_mask.float()
        logprobs, entropy = self.token_logprobs(batch, with_entropy=True)
        loss, stats = rl.ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip_eps)
        stats = {"policy_loss": loss.detach(), **stats}
        stats["entropy"] = rl.masked_mean(entropy, mask).detach()
        total = loss - self.entropy_coef * rl.masked_mean(entropy, mask)
        if self.reference is not None:
            with torch.no_grad():
                ref, _ = self.token_logprobs(batch, model=self.reference)
            kl = rl.masked_mean(rl.kl_penalty(logprobs, ref, mask, self.kl_estimator), mask)
            total = total + self.kl_coef * kl
            stats["kl_ref"] = kl.detach()
        return total, stats
