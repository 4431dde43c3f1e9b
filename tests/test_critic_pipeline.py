"""The critic pipeline end to end through the real CLI, tiny models: predict (with the in-loop split),
fit the critic, calibrate its threshold with validate, test with it."""

from __future__ import annotations

import json
from pathlib import Path

from lightning_asym.cli import main
from lightning_asym.types import CriticExample, Trajectory, read_jsonl

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "critic"


def test_predict_then_fit_then_test_with_the_fine_tuned_critic(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data, critic = tmp_path / "data" / "critic_tiny", tmp_path / "critic"  # the configs' relative paths
    main(["predict", "--config", str(CONFIGS / "datagen_tiny.yaml")])
    train = read_jsonl(data / "train.jsonl", CriticExample)
    assert train and {e.verdict for e in train} == {"approve", "revise"}

    main(["fit", "--config", str(CONFIGS / "sft_tiny.yaml"), f"--data.init_args.path={data}",
          "--trainer.max_steps=4", "--trainer.val_check_interval=4", f"--model.init_args.save_dir={critic}",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    assert (critic / "config.json").exists()
    assert json.loads((critic / "review_config.json").read_text())["revise_threshold"] == 0.5

    inloop = read_jsonl(data / "inloop.jsonl", CriticExample)
    assert inloop and {e.split for e in inloop} == {"inloop"}
    main(["validate", "--config", str(CONFIGS / "sft_tiny.yaml"), f"--data.init_args.path={data}",
          "--data.init_args.val_split=inloop", f"--model.init_args.model={critic}",
          "--trainer.enable_progress_bar=false"])  # fmt: skip
    (curve_file,) = (tmp_path / "runs" / "critic_sft_tiny").glob("*/calibration.json")
    out = json.loads(curve_file.read_text())
    settings = json.loads((critic / "review_config.json").read_text())
    assert out["summary"]["examples"] == len(inloop) and out["summary"]["split"] == "inloop"
    # the chosen threshold is the curve's best expected gain, the first (highest) among ties
    gains = [p["gain"] for p in out["curve"]]
    best = out["curve"][gains.index(max(gains))]
    assert settings["revise_threshold"] == best["threshold"] == out["summary"]["revise_threshold"]
    assert settings["calibration"]["chosen"] == best and settings["calibration"]["curve"] == str(
        curve_file.resolve()
    )
    assert best["tp"] + best["fn"] == sum(e.verdict == "revise" for e in inloop)
    assert (settings["include_policy"], settings["max_messages"], settings["few_shot"]) == (False, 4, False)

    main(["test", "--config", str(CONFIGS / "test_tiny.yaml"), f"--model.init_args.reviewer.init_args.backend={critic}",
          "--data.init_args.num_test_tasks=2", "--data.init_args.test_trials=1", "--trainer.enable_progress_bar=false"])  # fmt: skip
    (run,) = (tmp_path / "runs" / "critic_pipeline_test").iterdir()
    trajs = read_jsonl(run / "trajectories" / "test.jsonl", Trajectory)
    assert len(trajs) == 2
    reviews = [p.review for t in trajs for turn in t.turns for p in turn.proposals]
    assert reviews and all(r is not None and r.num_tokens > 0 for r in reviews)  # the tuned critic reviewed
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/pass^1", "test/critic_tokens", "test/unparsed_rate"} <= set(metrics)
