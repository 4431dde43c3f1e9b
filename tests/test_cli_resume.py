"""`--ckpt_path` with changed model settings: the command's config wins, and the change is logged.

Lightning's CLI replaces the model's config by the checkpoint's hyperparameters, so a fine-tune
continued with a new `save_dir` once wrote over the critic it started from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import yaml

from lightning_asym.cli import main

CONF = Path(__file__).parent / "conf"


def test_a_resumed_command_keeps_its_own_model_settings(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    config = str(CONF / "fit_tiny.yaml")
    main(["fit", "--config", config, "--trainer.max_steps", "1", "--trainer.val_check_interval", "1"])
    (ckpt,) = (tmp_path / "runs" / "fit_tiny" / "version_0" / "checkpoints").glob("*.ckpt")

    with caplog.at_level(logging.WARNING, logger="lightning_asym.cli"):
        main(
            [
                "validate",
                "--config",
                config,
                "--ckpt_path",
                str(ckpt),
                "--model.init_args.optim.actor_lr",
                "0.5",
            ]
        )
    saved = yaml.safe_load((tmp_path / "runs" / "fit_tiny" / "version_1" / "config.yaml").read_text())
    assert saved["model"]["init_args"]["optim"]["actor_lr"] == 0.5  # not the checkpoint's 1e-3
    assert "model.init_args.optim.actor_lr: 0.001 -> 0.5" in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lightning_asym.cli"):
        main(["validate", "--config", config, "--ckpt_path", str(ckpt)])  # the same settings: nothing to say
    assert "replace the checkpoint's" not in caplog.text
