"""`CriticSFT`: fine-tune a causal LM to review actions, full or LoRA, and save it as a plain critic.

The model learns to answer a review prompt with `VERDICT: approve|revise` and one line of
feedback (`review.format`). Prompts are rendered by `TransformersBackend.render`, the very
code that renders them when the saved critic reviews through `GenerativeCritic`, so training
and review see the same tokens. The loss is the causal-LM cross-entropy on the answer tokens
only. Logits are computed for the positions that are scored only (the LM head on the gathered
hidden states), so a 49K-token vocabulary does not cost a `[batch, length, vocab]` tensor.

Validation scores the verdict without generating: at the first answer token where the two
verdicts' tokenizations differ, the model's logits of the `revise` and the `approve` token
give P(revise) (positive class = revise) for accuracy, precision, recall and F1.

The model is built in `configure_model` (or on first use); under Lightning's `ModelParallelStrategy`
it is sharded there with FSDP2 (`models.shard_blocks`: each block, then the root; LoRA adapters
shard with the frozen weights of their blocks), and saving gathers the full weights first.

At the end of `fit` the critic is written as a transformers directory (LoRA merged into the
weights), loadable by `TransformersBackend(model=<dir>)` and `GenerativeCritic(backend=<dir>)`,
with `review_config.json` beside it: the prompt options it was trained with and
`revise_threshold: 0.5`. `lightning-asym validate` with `model: <that dir>` and
`data.init_args.val_split: inloop` calibrates the threshold (`jobs.critic_calibrate`).
"""

from __future__ import annotations

import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import BinaryAccuracy, BinaryF1Score, BinaryPrecision, BinaryRecall

from lightning_asym import models
from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.calibration import REVIEW_CONFIG, CalibrationConfig, calibrate, update_review_config
from lightning_asym.errors import UserError
from lightning_asym.jobs.critic_calibrate import check_options, gather_rows, report_calibration, score_row
from lightning_asym.jobs.critic_data import CriticDataModule, CriticEncoder
from lightning_asym.jobs.critic_lora import METHODS, lora_config
from lightning_asym.review.verdict import revise_logit, verdict_loss
from lightning_asym.types import REVISE, CriticExample

log = logging.getLogger(__name__)


class CriticSFT(models.BuiltLate, LightningModule):
    """Supervised fine-tuning of a generative critic on `CriticExample` batches.

    Args:
        model: `"tiny"` (random, built from `tiny`), `"smollm2"`, or a local transformers directory.
        tokenizer: tokenizer directory (default: the model's).
        tiny: options of `lightning_asym.backends.tiny.build_tiny` (arch, tokenizer, sizes, seed).
        method: `"full"` (every weight trains) or `"lora"` (peft adapters, merged when saved).
        lora: peft `LoraConfig` options: r, alpha, dropout, target_modules, ... (see `lora_config`).
        lr, weight_decay: AdamW settings (no decay on biases and norms).
        warmup_steps: linear warm-up, then linear decay to zero at the last step.
        max_length: most tokens of prompt + answer; a longer prompt keeps fewer transcript
            messages (its first tokens are cut only if one message does not fit), see
            `CriticEncoder.fit_prompt`; `train/truncated` logs the share of shortened prompts.
        include_policy, max_messages, earlier_actions: the critic's prompt options
            (`review_prompt`; earlier_actions lists the tool calls a max_messages window cuts); saved in
            the critic's `review_config.json`, which `GenerativeCritic` reads.
        privileged: train with the task's privileged text (`CriticExample.privileged`, from
            datagen with `privileged: true`) in the prompt; False drops it. The critic then
            needs it at review time too (supervision `privileged: true`); the actor never sees it.
        calibration: how validation chooses `revise_threshold` from the P(revise) of the
            validation examples (`calibration.CalibrationConfig`: fix_prob, misled_prob,
            criterion, beta); `validate` on a saved critic writes it into its review_config.json.
        verdict_weight: weight of a binary cross-entropy on the verdict alone (`log P(revise) -
            log P(approve)` at the verdict position, what the scored review reads), added to the
            mean token loss. 0 trains the verdict as one answer token among the feedback's many.
        dtype: weights dtype ("float32", "bfloat16", ...).
        save_dir: where the fine-tuned critic is written at the end of fit
            (default: `<log_dir>/critic`).
    """

    _BUILT = frozenset({"model", "tokenizer", "renderer", "encoder"})

    def __init__(
        self,
        model: str = "tiny",
        tokenizer: str | None = None,
        tiny: dict[str, Any] | None = None,
        method: str = "full",
        lora: dict[str, Any] | None = None,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        warmup_steps: int = 0,
        max_length: int = 1024,
        include_policy: bool = True,
        max_messages: int | None = None,
        dtype: str = "float32",
        save_dir: str | None = None,
        privileged: bool = False,
        calibration: CalibrationConfig | None = None,
        earlier_actions: bool = False,
        verdict_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if method not in METHODS:
            raise UserError(f"model.init_args.method must be one of {METHODS}, got {method!r}")
        if max_messages is not None and max_messages < 1:
            raise UserError(f"model.init_args.max_messages must be >= 1 or null (all), got {max_messages}")
        if verdict_weight < 0:
            raise UserError(f"model.init_args.verdict_weight must be >= 0, got {verdict_weight}")
        self.save_hyperparameters()
        self.method = method
        self.verdict_weight = verdict_weight
        self.lr, self.weight_decay, self.warmup_steps = lr, weight_decay, warmup_steps
        self.include_policy, self.max_messages, self.privileged = include_policy, max_messages, privileged
        self.max_length = max_length
        self.earlier_actions = earlier_actions
        self.calibration = calibration or CalibrationConfig()
        # a saved critic (a directory) is validated with the prompt options it was trained with
        self.critic_dir = Path(model).expanduser() if Path(model).expanduser().is_dir() else None
        if self.critic_dir is not None:
            check_options(self.critic_dir, self.review_options())
        self._val_rows: list[dict[str, Any]] = []  # each scored example (`score_row`): the curve's input
        self.save_dir = save_dir
        self.saved_dir: Path | None = None
        self.spec = models.ModelSpec(model, tokenizer, tiny, dtype, key="model.init_args")
        self._lora = lora
        self._built = False
        self.strict_loading = method != "lora"  # LoRA checkpoints hold the adapters only
        self.val_accuracy = BinaryAccuracy()
        self.val_precision = BinaryPrecision()
        self.val_recall = BinaryRecall()
        self.val_f1 = BinaryF1Score()

    def _build(self, corpus: Any = None) -> None:
        self.model, self.tokenizer, self.renderer = self._make_model()
        self.encoder = CriticEncoder(
            self.tokenizer,
            lambda messages: self.renderer.render(messages, add_generation_prompt=True),
            self.renderer.end_of_turn,
            self.max_length,
            self.include_policy,
            self.max_messages,
            self.privileged,
            self.earlier_actions,
        )

    def _make_model(self) -> tuple[Any, Any, TransformersBackend]:
        """A fresh model (peft-wrapped for LoRA), its tokenizer, and the renderer that
        GenerativeCritic's backend will be (same template, same end-of-turn)."""
        hf, tokenizer = self.spec.load()
        renderer = TransformersBackend(hf, tokenizer)
        if self.method == "lora":
            from peft import get_peft_model

            config = lora_config(hf, self._lora)
            try:
                hf = get_peft_model(hf, config)
            except ValueError as e:  # e.g. target modules the model does not have
                raise UserError(f"model.init_args.lora: {e}") from e
        return hf.train(), tokenizer, renderer

    def configure_model(self) -> None:
        """Build the model (once), and shard it under `ModelParallelStrategy` (FSDP2)."""
        super().configure_model()
        mesh = self.device_mesh
        if mesh is not None:
            policy = models.shard_policy(self.trainer.precision)
            models.shard_blocks(self.causal_lm, models.data_parallel_mesh(mesh), policy, lm=True)

    # ------------------------------------------------------------------ scoring

    @property
    def causal_lm(self) -> Any:
        """The transformers causal LM (inside the peft wrapper for LoRA)."""
        return self.model.get_base_model() if self.method == "lora" else self.model

    def logits_at(
        self, batch: dict[str, torch.Tensor], rows: torch.Tensor, cols: torch.Tensor
    ) -> torch.Tensor:
        """Next-token logits `[N, vocab]` at positions `(rows[n], cols[n])` of the batch's sequences."""
        ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
        return models.logits_at(self.causal_lm, ids, mask, rows, cols)

    def _step(self, examples: list[CriticExample], verdicts: bool) -> dict[str, torch.Tensor]:
        encoded = [self.encoder.encode(e) for e in examples]
        batch = self.encoder.collate(encoded)
        labels = batch["labels"].to(self.device)
        rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)
        vrows = (
            (batch["verdict_pos"] >= 0).nonzero(as_tuple=True)[0].to(self.device) if verdicts else rows[:0]
        )
        vcols = batch["verdict_pos"].to(self.device)[vrows]
        logits = self.logits_at(batch, torch.cat([rows, vrows]), torch.cat([cols, vcols])).float()
        losses = F.cross_entropy(logits[: len(rows)], labels[rows, cols + 1], reduction="none")
        out = {"losses": losses, "shortened": torch.tensor(sum(e.shortened for e in encoded))}
        if not verdicts:
            return out
        out["feedback"] = batch["feedback_mask"].to(self.device)[rows, cols + 1]
        score = torch.empty(len(examples), device=self.device)
        score[vrows] = self._revise_logit(logits[len(rows) :])
        missing = (batch["verdict_pos"] < 0).nonzero(as_tuple=True)[0].tolist()
        if missing:  # the answer's tokens do not start with the shared prefix: one more pass
            probe = self.encoder.probe_batch([encoded[i] for i in missing])
            prow = torch.arange(len(missing), device=self.device)
            score[missing] = self._revise_logit(
                self.logits_at(probe, prow, probe["verdict_pos"].to(self.device))
            )
        out["revise_logit"] = score
        out["p_revise"] = torch.sigmoid(score)
        out["revise"] = batch["revise"].to(self.device)
        return out

    def _revise_logit(self, logits: torch.Tensor) -> torch.Tensor:
        """log P(revise) - log P(approve) from next-token logits at the verdict position."""
        return revise_logit(logits, self.encoder.probe)

    # ------------------------------------------------------------------ Lightning hooks

    def training_step(self, batch: list[CriticExample], batch_idx: int) -> torch.Tensor:
        weighted = self.verdict_weight > 0
        out = self._step(batch, verdicts=weighted)
        n = len(batch)
        loss = out["losses"].mean()
        if weighted:
            verdict = verdict_loss(out["revise_logit"], out["revise"])
            self.log("train/verdict_loss", verdict, on_step=True, on_epoch=False, batch_size=n)
            loss = loss + self.verdict_weight * verdict
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("train/truncated", out["shortened"].float() / n, on_step=True, on_epoch=False, batch_size=n)
        self.log(
            "train/lr", self.optimizers().param_groups[0]["lr"], on_step=True, on_epoch=False, batch_size=n
        )
        return loss

    def validation_step(self, batch: list[CriticExample], batch_idx: int) -> None:
        with torch.no_grad():
            out = self._step(batch, verdicts=True)
        losses, feedback = out["losses"], out["feedback"]
        self.log("val/loss", losses.mean(), prog_bar=True, batch_size=len(losses))
        if feedback.any():
            self.log("val/feedback_loss", losses[feedback].mean(), batch_size=int(feedback.sum()))
        p, y = out["p_revise"], out["revise"]
        for name, metric in (
            ("verdict_accuracy", self.val_accuracy),
            ("precision", self.val_precision),
            ("recall", self.val_recall),
            ("f1", self.val_f1),
        ):
            metric.update(p, y)
            self.log(f"val/{name}", metric, prog_bar=name == "verdict_accuracy", batch_size=len(batch))
        self._val_rows += [score_row(ex, float(s)) for ex, s in zip(batch, p.float().tolist())]

    def on_validation_epoch_start(self) -> None:
        self._val_rows = []

    def on_validation_epoch_end(self) -> None:
        """The PR curve of this epoch's P(revise) and the calibrated threshold (logged; written by `validate`)."""
        rows = gather_rows(self._val_rows)
        self._val_rows = []
        scores = [r["p_revise"] for r in rows]
        labels = [r["verdict"] == REVISE for r in rows]
        if self.trainer.sanity_checking or not scores:
            return
        summary, points = calibrate(scores, labels, self.calibration)
        chosen = summary["chosen"]
        for key, value in (
            ("calibrated_threshold", summary["revise_threshold"]),
            ("calibrated_precision", chosen["precision"]),
            ("calibrated_recall", chosen["recall"]),
            ("calibrated_gain", chosen["gain"]),
            ("calibrated_f_beta", chosen["f_beta"]),
            ("average_precision", summary["average_precision"]),
            ("revise_rate", summary["revise_rate"]),
        ):
            self.log(f"val/{key}", float(value), rank_zero_only=True)
        if self.trainer.state.fn != TrainerFn.VALIDATING or not self.trainer.is_global_zero:
            return
        dm = self.trainer.datamodule
        report_calibration(
            self.trainer.log_dir or self.trainer.default_root_dir,
            self.critic_dir,
            self.review_options(),
            self.calibration,
            dm.val_split if isinstance(dm, CriticDataModule) else None,
            (summary, points, rows),
        )

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        if self.privileged and isinstance(dm, CriticDataModule):
            dm.setup("fit")
            if dm.examples is not None and not any(ex.privileged for ex in dm.examples["train"]):
                raise UserError(
                    f"model.init_args.privileged is true but no training example under {dm.path} carries "
                    "privileged text; generate the data with model.init_args.privileged: true "
                    "(configs/critic/datagen_privileged.yaml)"
                )

    def configure_optimizers(self) -> dict[str, Any]:
        params = [(n, p) for n, p in self.named_parameters() if p.requires_grad]
        groups = [
            {"params": [p for _, p in params if p.ndim >= 2], "weight_decay": self.weight_decay},
            {"params": [p for _, p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=self.lr)
        total = self.trainer.estimated_stepping_batches
        warmup = self.warmup_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / (warmup + 1)
            if not math.isfinite(total) or total <= warmup:
                return 1.0
            return max(0.0, (total - step) / (total - warmup))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.configure_model()  # load_from_checkpoint loads the weights next, into a built model

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.method == "lora":  # the frozen base is rebuilt from `model` at init
            keep = {n for n, p in self.named_parameters() if p.requires_grad}
            checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in keep}

    # ------------------------------------------------------------------ output

    def on_fit_end(self) -> None:
        path = Path(self.save_dir) if self.save_dir else Path(self.trainer.log_dir or ".") / "critic"
        model = self.full_model()  # a collective when sharded: every rank takes part
        if self.trainer.is_global_zero:  # log_dir above is a collective call too: every rank asks
            self.save_critic(path, model)

    def full_model(self) -> Any:
        """The trained model with its full weights: itself, or when sharded a fresh copy that the
        gathered weights are loaded into on rank 0 (every rank must call: the gather is a collective;
        other ranks get None)."""
        if not models.is_sharded(self.causal_lm):
            return self.model
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(
            self.model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
        )
        if not full:  # ranks other than 0
            return None
        model, _, _ = self._make_model()
        model.load_state_dict(full)
        return model

    def save_critic(self, path: str | Path, model: Any = None) -> Path:
        """Write the critic as a plain transformers directory (model, tokenizer, chat template);
        `model`: the full model to write (default: this module's, which must not be sharded)."""
        path = Path(path)
        model = self.model if model is None else model
        if self.method == "lora":
            model = copy.deepcopy(model).merge_and_unload()
        was_training = model.training
        model.eval().save_pretrained(path)
        model.train(was_training)
        # the template the critic was trained with (the ChatML fallback, if the model's own was unusable)
        self.tokenizer.chat_template = self.renderer.chat_template
        self.tokenizer.save_pretrained(path)
        self.saved_dir = path
        # a new critic: its prompt options, an uncalibrated threshold (a stale calibration would lie)
        update_review_config(path, {**self.review_options(), "revise_threshold": 0.5, "calibration": None})
        rank_zero_info(
            f"saved the fine-tuned critic to {path} with its prompt options in {path / REVIEW_CONFIG}; "
            f"review with GenerativeCritic(backend='{path}'); calibrate its threshold with `lightning-asym "
            f"validate` (this config, --model.init_args.model {path} --data.init_args.val_split inloop)"
        )
        return path

    def review_options(self) -> dict[str, Any]:
        """The prompt options this critic reads (saved in `review_config.json`)."""
        return {
            "include_policy": self.include_policy,
            "max_messages": self.max_messages,
            "earlier_actions": self.earlier_actions,
            "privileged": self.privileged,
            "few_shot": False,  # trained on the bare prompt: worked examples would be a new input
            "max_length": self.max_length,
        }
