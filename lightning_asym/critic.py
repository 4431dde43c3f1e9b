"""The value critic: a smaller model with its own tokenizer that scores the turns of an episode.

The critic never shares the actor's tokens. It reads the conversation as plain text
(`role: content` lines), re-tokenizes it with its own tokenizer, and a value head reads the
hidden state at the end of each state s_t: the conversation just before the actor's t-th
action, and s_T after the last one (the bootstrap value of a truncated episode). So any
transformers decoder, or encoder, can be the critic, whatever the actor is (as in ArCHer).

With `privileged=True` the task's hidden information (the user's true preferences, the
true database) heads the critic's text. It is never part of the actor's input.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning import LightningModule
from torch import nn

from lightning_asym.models import AdaptsToEnv, ModelSpec, hidden_at, is_sharded, shard_blocks
from lightning_asym.types import Message, Trajectory

PRIVILEGED_HEADER = "[privileged] "


def render_message(m: Message) -> str:
    """One message as the critic reads it."""
    text = m.content or ""
    if not text and m.tool_calls:
        text = " ".join(f"{c.name}({c.arguments})" for c in m.tool_calls)
    return f"{m.role}: {text}\n"


def _hidden_size(config: Any) -> int:
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for name in ("hidden_size", "n_embd", "d_model", "dim"):
        if isinstance(getattr(cfg, name, None), int):
            return int(getattr(cfg, name))
    raise ValueError(f"cannot find the hidden size in {type(config).__name__}; set it on the config")


def _is_causal(backbone: nn.Module) -> bool:
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    return type(backbone.config) in MODEL_FOR_CAUSAL_LM_MAPPING


def load_backbone(spec: ModelSpec, corpus: Sequence[str] | None = None) -> tuple[nn.Module, Any]:
    """The critic's trunk (a base model without LM head) and its tokenizer."""
    lm, tok = spec.load(corpus)
    trunk = lm.base_model if hasattr(lm, "base_model") else lm
    return trunk, tok


class CriticModule(AdaptsToEnv, LightningModule):
    """V(s_t) for every turn of a trajectory, from a model of the critic's own choosing.

    Args:
        model: `"tiny"` (random, built from `tiny`), `"smollm2"`, or a local model directory.
        tokenizer: tokenizer directory (default: the model's).
        tiny: options of `lightning_asym.backends.tiny.build_tiny` (arch, tokenizer, sizes...);
            `corpus: env` trains a BPE tokenizer on the data module's env (see `adapt_to_env`).
        privileged: prepend the task's privileged information to the critic's view.
        max_length: longest critic input; longer conversations keep their latest tokens.
        include_system: keep the system message (the policy) in the critic's view.
        dtype: weights dtype ("float32" (default), "bf16"/"bfloat16", "fp16", "auto": a directory's
            own; see `backends.loading.resolve_dtype`).

    The model is built by `configure_model()` (or on first use), not in `__init__`: see `models.AdaptsToEnv`.
    """

    _BUILT = frozenset({"backbone", "tokenizer", "value_head", "causal", "_pad"})

    def __init__(
        self,
        model: str = "tiny",
        tokenizer: str | None = None,
        tiny: dict[str, Any] | None = None,
        privileged: bool = False,
        max_length: int = 1024,
        include_system: bool = True,
        dtype: str = "float32",
    ) -> None:
        super().__init__()
        self.privileged = privileged
        self.max_length = max_length
        self.include_system = include_system
        self.spec = ModelSpec(model, tokenizer, tiny, dtype, key="critic")
        self._built = False

    def _build(self, corpus: Sequence[str] | None) -> None:
        self.backbone, self.tokenizer = load_backbone(self.spec, corpus)
        self.value_head = nn.Linear(_hidden_size(self.backbone.config), 1)
        nn.init.normal_(self.value_head.weight, std=1e-3)
        nn.init.zeros_(self.value_head.bias)
        self.causal = _is_causal(self.backbone)
        self._pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

    def shard(self, mesh: Any, policy: Any) -> None:
        """FSDP2 over `mesh` (`models.shard_blocks`): the trunk's blocks, the trunk, and the value
        head as a unit of its own (every trained parameter must belong to one, or its gradient
        would not be reduced across ranks)."""
        from torch.distributed.fsdp import fully_shard

        self.configure_model()
        if is_sharded(self.value_head):
            return
        shard_blocks(self.backbone, mesh, policy)
        fully_shard(self.value_head, mesh=mesh, mp_policy=policy)

    def export(self, path: Any, training: str = "") -> Any:
        """Write the critic as a transformers directory (trunk, tokenizer, value head, its reading
        options) with a README.md model card; `lightning_asym.export.load_critic` loads it back."""
        from lightning_asym.export import export_critic

        return export_critic(self, path, training)

    @classmethod
    def from_export(cls, path: Any, **overrides: Any) -> CriticModule:
        """The critic a `CriticModule.export` directory holds: trunk, tokenizer, value head and
        reading options (`overrides` replace options, e.g. `max_length`)."""
        from lightning_asym.export import read_critic

        options, head = read_critic(path)
        critic = cls(model=str(path), **{**options, **overrides})
        critic.value_head.load_state_dict(head)
        return critic.eval()

    # ------------------------------------------------------------------ text view
    def view(self, traj: Trajectory, privileged: str = "") -> tuple[list[int], list[int]]:
        """Critic token ids of `traj` and the index of the last token of each state s_0..s_T."""
        enc = self.tokenizer
        header = (
            enc(PRIVILEGED_HEADER + privileged + "\n", add_special_tokens=False)["input_ids"]
            if (self.privileged and privileged)
            else []
        )
        ids: list[int] = list(header)
        ends: list[int] = []
        bounds = traj.state_boundaries()
        for i, m in enumerate(traj.messages):
            if m.role != "system" or self.include_system:
                ids.extend(enc(render_message(m), add_special_tokens=False)["input_ids"])
            if i + 1 in bounds:
                ends.extend([len(ids) - 1] * bounds.count(i + 1))
        if not ids:
            ids = [self._pad]
        ends = [max(e, 0) for e in ends]
        overflow = len(ids) - self.max_length
        if overflow > 0:  # keep the header and the latest tokens
            keep = len(header)
            ids = ids[:keep] + ids[keep + overflow :]
            ends = [max(e - overflow, keep - 1, 0) for e in ends]
        return ids, ends

    # ------------------------------------------------------------------ values
    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """Values `[B, S]` read at `positions [B, S]` of the hidden states of `input_ids [B, L]`."""
        rows = torch.arange(positions.shape[0], device=positions.device)[:, None].expand_as(positions)
        picked = hidden_at(self.backbone, input_ids, attention_mask, rows, positions.clamp(min=0))
        return self.value_head(picked.to(self.value_head.weight.dtype)).squeeze(-1)

    def values(
        self, trajs: Sequence[Trajectory], privileged: Sequence[str] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(values [B, T+1], mask [B, T+1])`: V(s_0..s_T) of each trajectory, zero-padded."""
        privileged = list(privileged) if privileged is not None else [""] * len(trajs)
        views = [self.view(t, p) for t, p in zip(trajs, privileged)]
        if self.causal:
            return self._values_causal(views)
        return self._values_per_state(views)

    def _batch(self, seqs: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad, dtype=torch.long, device=self.device)
        mask = torch.zeros((len(seqs), width), dtype=torch.long, device=self.device)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
            mask[i, : len(s)] = 1
        return ids, mask

    def _values_causal(self, views: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
        # one pass per trajectory: causal attention means the state ending at p sees only <= p
        ids, attn = self._batch([v[0] for v in views])
        width = max(len(v[1]) for v in views)
        pos = torch.zeros((len(views), width), dtype=torch.long, device=self.device)
        valid = torch.zeros((len(views), width), dtype=torch.bool, device=self.device)
        for i, (_, ends) in enumerate(views):
            pos[i, : len(ends)] = torch.tensor(ends, dtype=torch.long)
            valid[i, : len(ends)] = True
        vals = self(ids, attn, pos)
        return vals.masked_fill(~valid, 0.0), valid

    def _values_per_state(
        self, views: list[tuple[list[int], list[int]]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # a bidirectional encoder would see the future, so each state gets its own sequence
        seqs = [ids[: e + 1] for ids, ends in views for e in ends]
        ids, attn = self._batch(seqs)
        last = (attn.sum(1) - 1).unsqueeze(1)
        flat = self(ids, attn, last).squeeze(1)
        width = max(len(v[1]) for v in views)
        vals = torch.zeros((len(views), width), dtype=flat.dtype, device=self.device)
        valid = torch.zeros((len(views), width), dtype=torch.bool, device=self.device)
        k = 0
        for i, (_, ends) in enumerate(views):
            vals[i, : len(ends)] = flat[k : k + len(ends)]
            valid[i, : len(ends)] = True
            k += len(ends)
        return vals, valid


# the generative (reviewing) critic lives in review/; re-exported so `lightning_asym.critic.GenerativeCritic` works
from lightning_asym.review.generative import GenerativeCritic  # noqa: E402,F401
