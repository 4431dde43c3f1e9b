"""Model plumbing shared by `ActorModule` and `CriticModule`: what model to build, and logits where needed.

`ModelSpec` is the model a module builds: `"tiny"` (random, from `tiny` options), `"smollm2"`, or a
local directory, with a tokenizer and a dtype parsed once by `backends.loading.resolve_dtype`. A tiny
model may learn its BPE tokenizer from the env (`tiny: {tokenizer: bpe, corpus: env}`); the spec
then builds without a corpus first and `AdaptsToEnv.adapt_to_env` rebuilds it once the env is known.
`hidden_at`/`logits_at` run the trunk once and read only the positions a loss needs, so no
`[batch, length, vocab]` tensor is built.

Modules build their model late: `configure_model()` (the Lightning hook, called by the jobs) builds
it once, after the env is known, so a `corpus: env` tokenizer is trained before the one build; used
outside a Trainer, the first access to a built attribute builds it. Under Lightning's
`ModelParallelStrategy` the jobs then call `shard(mesh, policy)`: FSDP2's `fully_shard` on each
transformer block, then on the root (`shard_blocks`). `gathered(model)` holds the full weights of a
sharded model for a rollout phase, so generation runs with no collective per forward.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lightning_asym.backends.loading import load_model_and_tokenizer, resolve_dtype


@dataclass
class ModelSpec:
    """The model a module builds (see `backends.loading.load_model_and_tokenizer`).

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


class BuiltLate:
    """A module whose model `self._build(corpus)` builds late, from a `ModelSpec` (`self.spec`).

    `configure_model()` builds it once (later calls do nothing). Until then, reading one of
    `_BUILT` (the attributes `_build` sets) builds it, so a module used outside a Trainer behaves
    as if it had been built in `__init__`. Subclasses set `self._built = False` in `__init__`.
    """

    spec: ModelSpec
    _BUILT: frozenset[str] = frozenset()

    def _build(self, corpus: Sequence[str] | None) -> None:
        raise NotImplementedError

    def __getattr__(self, name: str) -> Any:
        try:  # nn.Module's: parameters, buffers, submodules
            return super().__getattr__(name)  # type: ignore[misc]
        except AttributeError:
            if name not in type(self)._BUILT or self.__dict__.get("_built") is not False:
                raise
        self.configure_model()
        return getattr(self, name)

    @property
    def built(self) -> bool:
        return bool(self.__dict__.get("_built", True))

    def configure_model(self) -> None:
        """Build the model (once: later calls do nothing), from the env's texts if `adapt_to_env` gave them."""
        if self.built:
            return
        self._built = True  # first: `_build` reads what it has just set
        try:
            self._build(self.__dict__.get("_env_corpus"))
        except BaseException:
            self._built = False  # a failed build is not a built model
            raise


class AdaptsToEnv(BuiltLate):
    """A module built late whose tiny tokenizer may be trained on the env's texts (`corpus: env`)."""

    @property
    def corpus_from_env(self) -> bool:
        return self.spec.corpus_from_env

    @property
    def _corpus_from_env(self) -> bool:  # the name `jobs/asym_ac.py` reads
        return self.spec.corpus_from_env

    def adapt_to_env(self, env: Any) -> None:
        """Train a tiny model's BPE tokenizer on `env.corpus()` (`tiny.corpus: env`).

        Called by the jobs when the data module is set up, before `configure_model`: the model is
        then built once, with the trained tokenizer. A model already built (used before the env was
        known) is rebuilt. Only the first call counts, so a later stage keeps the trained weights.
        """
        if self.spec.corpus_from_env and not getattr(self, "_adapted", False):
            self._env_corpus = list(env.corpus())
            self._adapted = True
            if self.built:
                self._build(self._env_corpus)


# ---------------------------------------------------------------------- FSDP2


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks of a transformers model: modules of the classes its `_no_split_modules`
    names (`LlamaDecoderLayer`, `GPT2Block`, ...), the unit FSDP shards one by one."""
    names: set[str] = set()
    for m in model.modules():
        names |= set(getattr(m, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} declares no transformer block class (`_no_split_modules`), so it "
            "cannot be sharded block by block; use a transformers model or trainer.strategy: ddp"
        )
    return blocks


def shard_policy(precision: Any) -> Any:
    """FSDP2's mixed precision for a Trainer `precision`: bf16 parameters with fp32 gradient
    reduction for `bf16-mixed`/`bf16-true`, none (full fp32) otherwise."""
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if str(precision).startswith("bf16"):
        return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    return MixedPrecisionPolicy()


def data_parallel_mesh(mesh: Any, key: str = "trainer.strategy") -> Any:
    """The data-parallel dimension of `ModelParallelStrategy`'s mesh; tensor parallelism is refused."""
    if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
        raise ValueError(
            f"{key}: tensor_parallel_size {mesh['tensor_parallel'].size()} is not supported (the models "
            "shard with FSDP2 only); set init_args.tensor_parallel_size: 1 and data_parallel_size to the "
            "number of processes"
        )
    return mesh["data_parallel"] if "data_parallel" in (mesh.mesh_dim_names or ()) else mesh


def is_sharded(model: nn.Module) -> bool:
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def shard_blocks(model: nn.Module, mesh: Any, policy: Any, lm: bool = False) -> None:
    """`fully_shard` each transformer block of `model`, then `model` itself (its embeddings, norms
    and head). With `lm`, `logits_at(model, ...)` (the trunk, then the head on a few positions,
    outside `model.forward`) is registered as a forward of the root, so FSDP gathers the root's
    parameters around it and reduces their gradients after it."""
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    if is_sharded(model):
        return
    for block in transformer_blocks(model):
        fully_shard(block, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    if lm:
        model.sharded_logits_at = functools.partial(_logits_at, model)
        register_fsdp_forward_method(model, "sharded_logits_at")


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Hold the full parameters of a sharded `model` on every rank while the block runs (one
    all-gather per unit on entry, freed on exit); nothing for a model that is not sharded.

    Generation calls the model once per token, and ranks generate different episodes, so a
    sharded forward (a collective per unit) would have ranks wait on each other at every token
    and hang when one rank finishes its episodes first. Gathered, each forward is local.
    """
    from torch.distributed.fsdp import FSDPModule

    units = [m for m in model.modules() if isinstance(m, FSDPModule)]
    if not units:
        yield
        return
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            # FSDP's defaults: blocks reshard after forward, the root keeps its parameters for backward
            unit.set_reshard_after_forward(unit is not model, recurse=False)


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
    # FSDP2: the root's hooks gather and reduce (`shard_blocks`)
    sharded = getattr(lm, "sharded_logits_at", None)
    if sharded is not None:
        return sharded(input_ids, attention_mask, rows, cols)
    return _logits_at(lm, input_ids, attention_mask, rows, cols)


def _logits_at(
    lm: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
) -> torch.Tensor:
    trunk, head = getattr(lm, "base_model", lm), lm.get_output_embeddings()
    if trunk is lm or head is None:
        return lm(input_ids=input_ids, attention_mask=attention_mask).logits[rows, cols]
    return head(hidden_at(trunk, input_ids, attention_mask, rows, cols))
