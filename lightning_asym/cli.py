"""`lightning-asym`: LightningCLI over the jobs of `lightning_asym.jobs`.

Any component is swapped in YAML with `class_path`/`init_args`; short class names work
because importing the package's rooms registers their classes. Every run writes its
final metrics to `<log_dir>/metrics.json`. A bad config value or key ends the run with one
line, `error: <key>: <what is wrong>`, and exit status 2 (`cli_errors`).
"""

from __future__ import annotations

import json
import logging
import math
import sys
import warnings
from abc import ABCMeta, abstractmethod
from pathlib import Path
from typing import Any, NoReturn

from lightning import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

import lightning_asym.backends  # noqa: F401  (register classes for short class_path names)
import lightning_asym.envs  # noqa: F401
import lightning_asym.jobs as jobs
import lightning_asym.rollout  # noqa: F401
from lightning_asym.cli_errors import condense, config_error
from lightning_asym.errors import UserError
from lightning_asym.progress import AsymProgressBar

log = logging.getLogger(__name__)

DESCRIPTION = (
    "lightning_asym: asymmetric actor-critic for multi-turn LLM agents. `test` evaluates a fixed "
    "actor, alone or supervised by a reviewer; `predict` mines critic data from self-play; `fit` "
    "trains the critic (CriticSFT) or the actor with PPO and a value critic (AsymmetricActorCritic). "
    "`serve` runs an OpenAI-compatible proxy that lets out only reviewer-approved actions "
    "(lightning-asym serve --help). Start from a config: lightning-asym fit --config configs/quickstart.yaml"
)
VERBS = {
    "fit": "Train a job: AsymmetricActorCritic (PPO, asymmetric value critic) or CriticSFT (the reviewer).",
    "validate": "Run a job's validation loop (held-out episodes).",
    "test": "Evaluate an actor, alone or supervised (SupervisedAgent): success, pass^k, critic rates.",
    "predict": "Generate critic data from the fixed actor's self-play (CriticDataGen).",
}


class _JobMeta(ABCMeta):
    """Lists the registered jobs as `Job`'s subclasses, which is what `--help` and short names use."""

    def __subclasses__(cls) -> list[type]:  # type: ignore[override]
        return list(JOBS)


class Job(LightningModule, metaclass=_JobMeta):
    """What `--model` accepts: a job of `lightning_asym.jobs`, or a subclass of one.

    The jobs stay plain LightningModules (usable without the CLI); the CLI registers the ones it
    runs, so `--model` no longer offers `ActorModule` or `CriticModule`, the models a job trains.
    """

    @abstractmethod
    def _never_instantiated(self) -> None:
        """Abstract, so `Job` itself is neither offered nor made: it only names the jobs."""


JOBS: tuple[type[LightningModule], ...] = tuple(
    c
    for c in (getattr(jobs, name) for name in jobs.__all__)
    if isinstance(c, type) and issubclass(c, LightningModule)
)
for _job in JOBS:
    Job.register(_job)


def silence_known_noise() -> None:
    """The one place where we hide messages we chose not to show, each with its reason."""
    rules = [
        # training_step(dataloader_iter) is deliberate: a rollout batch must be generated with the
        # weights of the step that uses it, so Lightning may not prefetch it (docs/architecture.md)
        r".*`dataloader_iter` step flavor.*",
        r".*`dataloader_iter` argument in the `training_step`.*",
        # FixedRollouts has a length so bars have a total; we load with num_workers=0, the case
        # where the length is exact
        r".*`IterableDataset` has `__len__` defined.*",
        # eval mode on purpose: PPO runs with dropout off, so a resumed run replays the
        # uninterrupted one bit for bit, and the KL reference policy is frozen
        r".*module\(s\) in eval mode at the start of training.*",
        # raised inside Lightning's own pytree helper by newer torch; nothing we call
        r".*`isinstance\(treespec, LeafSpec\)` is deprecated.*",
        # peft probes `model.is_gradient_checkpointing` (a deprecated transformers alias)
        r".*`is_gradient_checkpointing` is deprecated.*",
        # FSDP2 (ModelParallelStrategy) warns when a sharded unit returns a view, as the critic's
        # trunk and value head do: an in-place op on it would skip the backward all-gather, and
        # ours only index it and compute out of place (models.hidden_at, CriticModule.forward)
        r".*FSDP2-wrapped module .* returned a view tensor.*",
    ]
    for message in rules:
        warnings.filterwarnings("ignore", message=message)
    # Lightning advertises its cloud products on every run ("💡 Tip: ...") through this logger
    tips = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _NoTips) for f in tips.filters):
        tips.addFilter(_NoTips())


class _NoTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


class AsymArgumentParser(LightningArgumentParser):
    """A parser whose errors are one line naming the key, not 50 lines of usage first."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:
            super().error(message, ex)
        parser = getattr(ex, "subcommand_parser", None) or self
        prog = parser.prog.replace(" [options]", "")
        options = list(getattr(parser, "_option_string_actions", {}))
        sys.stderr.write(f"{prog}: bad command line or config; `{prog} --help` lists the options\n")
        text = condense(message, options)
        if text.startswith("model:") and "config" not in text:
            text += f" (--model takes a job: {', '.join(c.__name__ for c in JOBS)})"
        sys.stderr.write(f"error: {text}\n")
        self.exit(2)


class MetricsFile(Callback):
    """Writes the logged metrics to `<log_dir>/metrics.json` at the end of each stage.

    Stages merge into the same file (a `fit` then `test` in one directory keeps both).
    """

    def __init__(self, filename: str = "metrics.json") -> None:
        self.filename = filename

    def path(self, trainer: Trainer) -> Path:
        return Path(trainer.log_dir or trainer.default_root_dir) / self.filename

    def _dump(self, trainer: Trainer) -> None:
        if trainer.sanity_checking:
            return
        path = self.path(trainer)  # every rank: log_dir is a collective call under DDP
        if not trainer.is_global_zero:
            return
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        for k, v in trainer.callback_metrics.items():
            x = float(v)
            data[k] = x if math.isfinite(x) else None
        data["global_step"] = trainer.global_step
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._dump(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._dump(trainer)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._dump(trainer)


class AsymCLI(LightningCLI):
    """LightningCLI with our defaults: a progress bar that counts steps and episodes,
    TensorBoard under `runs/`, metrics.json, and config errors as one line."""

    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except UserError:
            raise
        except Exception as e:
            config = self.config.get(str(self.subcommand), self.config) if self.subcommand else self.config
            error = config_error(e, config)
            if error is None:
                raise
            raise error from e

    def _parse_ckpt_path(self) -> None:
        """Lightning's CLI replaces the model's config by the hyperparameters saved in `ckpt_path`,
        silently dropping what this command set: a critic fine-tune continued with a new
        `save_dir` wrote over the critic it started from. Here the command's config wins where it
        names a model; each model setting that differs from the checkpoint's is logged (weights
        built under other settings may not load). Without a model in the config, the
        checkpoint's settings are used, as Lightning does."""
        given = self.config.clone()
        super()._parse_ckpt_path()
        sub = self.config.get("subcommand")
        if not sub or self.config == given or given[sub].get("model") is None:
            return
        mine, saved = dict(given[sub]["model"].items()), dict(self.config[sub]["model"].items())
        changed = sorted(k for k in mine.keys() | saved.keys() if mine.get(k) != saved.get(k))
        self.config = given
        if changed:
            shown = "; ".join(f"model.{k}: {saved.get(k)!r} -> {mine.get(k)!r}" for k in changed[:8])
            log.warning(
                "%s --ckpt_path: this config's model settings replace the checkpoint's where they differ (%s%s)",
                sub,
                shown,
                f"; and {len(changed) - 8} more" if len(changed) > 8 else "",
            )

    def before_instantiate_classes(self) -> None:
        if self.subcommand is None:
            return
        config = self.config[self.subcommand]
        _warn_emulated_bf16(config.get("trainer.precision"), config.get("trainer.accelerator"))
        if self.subcommand == "fit":
            self._resume_into_same_version(config)

    def _resume_into_same_version(self, config: Any) -> None:
        """`fit --ckpt_path <save_dir>/<name>/version_N/checkpoints/x.ckpt` logs into version_N again,
        so a resumed run's curves continue in the same TensorBoard run instead of a new one."""
        ckpt = config.get("ckpt_path")
        logger = config.get("trainer.logger")
        if not ckpt or not hasattr(logger, "init_args") or logger.init_args.get("version") is not None:
            return
        checkpoints = Path(ckpt).resolve().parent
        run = checkpoints.parent
        save_dir, name = logger.init_args.get("save_dir"), logger.init_args.get("name")
        if checkpoints.name != "checkpoints" or not run.name.startswith("version_") or save_dir is None:
            return
        if run.parent == (Path(save_dir) / (name or "")).resolve():
            # an int N is what TensorBoardLogger itself names version_N (and the bar shows as v_num N)
            suffix = run.name.removeprefix("version_")
            logger.init_args.version = int(suffix) if suffix.isdigit() else run.name

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict[str, Any]:
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        # A job that prints its own table of the test figures (SupervisedAgent) would otherwise
        # be followed by Lightning's flat table of the same numbers.
        if subcommand == "test" and getattr(type(self.model), "prints_test_table", False):
            kwargs["verbose"] = False
        return kwargs

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        configured = [*(config.get("callbacks") or []), *callbacks]
        extra: list[Callback] = [MetricsFile()]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in configured
        ):
            extra.append(AsymProgressBar())
        return super()._instantiate_trainer(config, [*callbacks, *extra])


TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        # no hp_metric: TensorBoard would show a placeholder -1 next to the real metrics
        "init_args": {"save_dir": "runs", "name": "lightning_asym", "default_hp_metric": False},
    },
}


def _warn_emulated_bf16(precision: Any, accelerator: Any) -> None:
    """bf16 precision on a CPU that lacks AVX512-BF16 and AMX runs several times slower than fp32
    (torch emulates it): say so once, with the setting to change."""
    import torch

    from lightning_asym.backends.hardware import native_bf16

    on_cpu = str(accelerator) == "cpu" or not torch.cuda.is_available()
    if "bf16" in str(precision) and on_cpu and not native_bf16("cpu"):
        warnings.warn(
            f"trainer.precision {precision} on this CPU (no AVX512-BF16 or AMX) is emulated and runs "
            "several times slower than float32 (7x for SmolLM2 matmuls on an AVX2 EPYC): "
            "pass --trainer.precision 32-true",
            stacklevel=2,
        )


def main(args: list[str] | None = None) -> None:
    """Entry point of the `lightning-asym` console script (returns None: exit status 0).

    A `UserError` (an unreachable endpoint, a bad config value) is printed as one line,
    `error: <message>`, on stderr, and exits with status 2 instead of a traceback.
    """
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["serve"]:  # the supervised proxy: its own parser (lightning_asym/serve/cli.py)
        from lightning_asym.serve.cli import main as serve_main

        return serve_main(argv[1:])
    silence_known_noise()
    try:
        AsymCLI(
            Job,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_class=AsymArgumentParser,
            parser_kwargs={
                "prog": "lightning-asym",
                "description": DESCRIPTION,
                **{verb: {"description": text} for verb, text in VERBS.items()},
            },
            args=args,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
