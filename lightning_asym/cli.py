"""`lightning-asym`: LightningCLI over every module and data module of the package.

Any component is swapped in YAML with `class_path`/`init_args`; short class names work
because importing the package's rooms registers their classes. Every run writes its
final metrics to `<log_dir>/metrics.json`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from lightning import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.cli import LightningCLI

import lightning_asym.backends  # noqa: F401  (register classes for short class_path names)
import lightning_asym.envs  # noqa: F401
import lightning_asym.jobs  # noqa: F401
import lightning_asym.rollout  # noqa: F401
from lightning_asym.errors import UserError


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
    """LightningCLI with our defaults: rich progress bar, TensorBoard under `runs/`, metrics.json."""

    def _instantiate_trainer(self, config: dict[str, Any], callbacks: list[Callback]) -> Trainer:
        configured = [*(config.get("callbacks") or []), *callbacks]
        extra: list[Callback] = [MetricsFile()]
        if config.get("enable_progress_bar", True) is not False and not any(
            isinstance(c, ProgressBar) for c in configured
        ):
            extra.append(RichProgressBar())
        return super()._instantiate_trainer(config, [*callbacks, *extra])


TRAINER_DEFAULTS: dict[str, Any] = {
    "accelerator": "cpu",
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "runs", "name": "lightning_asym"},
    },
}


def main(args: list[str] | None = None) -> None:
    """Entry point of the `lightning-asym` console script (returns None: exit status 0).

    A `UserError` (an unreachable endpoint, a bad config value) is printed as one line,
    `error: <message>`, on stderr, and exits with status 2 instead of a traceback.
    """
    argv = sys.argv[1:] if args is None else args
    if argv[:1] == ["serve"]:  # the supervised proxy: its own parser (lightning_asym/serve/cli.py)
        from lightning_asym.serve.cli import main as serve_main

        return serve_main(argv[1:])
    try:
        AsymCLI(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            trainer_defaults=TRAINER_DEFAULTS,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            args=args,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
