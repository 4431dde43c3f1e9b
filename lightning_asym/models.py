"""Model plumbing shared by `ActorModule` and `CriticModule`: what model to build, and logits where needed.

`ModelSpec` is the model a module builds: `"tiny"` (random, from `tiny` options), `"smollm2"`, or a
local directory, with a tokenizer and a dtype parsed once by `backends.hf.resolve_dtype`. A tiny
model may learn its BPE tokenizer from the env (`tiny: {tokenizer: bpe, corpus: env}`); the spec
then builds without a corpus first and `AdaptsToEnv.adapt_to_env` rebuilds it once the env is known.
`hidden_at`/`logits_at` run the trunk once and read only the positions a loss needs, so no
`[batch, length, vocab]` tensor is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_asym.backends.hf import load_model_and_tokenizer, resolve_dtype


@dataclass
class ModelSpec:
    """The model a module builds (see `backends.hf.load_model_and_tokenizer`).

    `key` names the module's config key in error messages (e.g. `model.init_args.critic`).
    """

    model: str = "tiny"
    tokenizer: str | None = None
    tiny: dict[str, Any] | None = None
    dtype: str | torch.dtype | None = None
    key: str = "model"

    def __post_init__(self) -> None:
        try:
            self.torch_dtype = resolve_dtype(self.dtype)
        except ValueError as e:  # name the config key, not only the value
            raise ValueError(f"{self.key}.dtype: {e}") from None
        self.tiny = dict(self.tiny) if self.tiny else None

    @property
    def corpus_from_env(self) -> bool:
        """`tiny: {corpus: env}`: the tiny tokenizer is trained on the env's texts (`adapt_to_env`)."""
        return bool(self.tiny) and self.tiny.get("corpus") == "env"  # type: ignore[union-attr]

    def tiny_options(self, corpus: Sequence[str] | None = None) -> dict[str, Any] | None:
        """The `build_tiny` options: with `corpus: env`, the env's `corpus` once known, none before."""
        if not self.corpus_from_env:
            return self.tiny
        opts = {k: v for k, v in self.tiny.items() if k != "corpus"}  # type: ignore[union-attr]
        return {**opts, "corpus": list(corpus)} if corpus is not None else opts

    def load(self, corpus: Sequence[str] | None = None) -> tuple[Any, Any]:
        """`(model, tokenizer)` in `dtype` (float32 by default; "auto" keeps a directory's own)."""
        return load_model_and_tokenizer(self.model, self.tokenizer, self.tiny_options(corpus), self.dtype)


class AdaptsToEnv:
    """`adapt_to_env` for a module built from a `ModelSpec` (`self.spec`) by `self._build(corpus)`."""

    spec: ModelSpec

    def _build(self, corpus: Sequence[str] | None) -> None:
        raise NotImplementedError

    @property
    def corpus_from_env(self) -> bool:
        return self.spec.corpus_from_env

    @property
    def _corpus_from_env(self) -> bool:  # the name `jobs/asym_ac.py` reads
        return self.spec.corpus_from_env

    def adapt_to_env(self, env: Any) -> None:
        """Rebuild a tiny model whose BPE tokenizer is trained on `env.corpus()` (`tiny.corpus: env`).

        Called by the jobs when the data module is set up, before optimisers and checkpoints;
        only once, so a later stage keeps the trained weights.
        """
        if self.spec.corpus_from_env and not getattr(self, "_adapted", False):
            self._build(env.corpus())
            self._adapted = True


def hidden_at(
    trunk: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """The trunk's last hidden states at `(rows, cols)` (index tensors of one shape S): `[*S, hidden]`."""
    hidden = trunk(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    return hidden[rows, cols]


def logits_at(
    lm: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    """Next-token logits `[N, vocab]` at positions `(rows[n], cols[n])` of a causal LM's input.

    The LM head runs on those positions only; a model without a separable trunk and head
    gets a full forward.
    """
    trunk, head = getattr(lm, "base_model", lm), lm.get_output_embeddings()
    if trunk is lm or head is None:
        return lm(input_ids=input_ids, attention_mask=attention_mask).logits[rows, cols]
    return head(hidden_at(trunk, input_ids, attention_mask, rows, cols))
