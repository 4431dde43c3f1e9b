"""Plot a critic's calibration: the PR curve with the chosen threshold, and pass^1 against threshold.

Reads the `calibration.json` that `lightning-asym validate` writes (see
`configs/critic/calibrate_smollm2_lora.yaml`) and draws `--out`: the precision-recall curve with
the chosen point and the default 0.5 marked, beside the expected gain and F-beta against the
threshold. Given `lightning-asym test` results at several thresholds (`--eval T=<metrics.json>`,
each run with `--model.init_args.reviewer.init_args.revise_threshold T`) it also draws
`--pass-out`: pass^1 against the threshold, with flat lines for reference rows
(`--reference none=<metrics.json>`, `--reference rules=<metrics.json>`). The last line printed is
one JSON object naming what was written.

    python tools/plot_calibration.py runs/calibrate_smollm2_lora/version_0/calibration.json \\
        --out docs/critic_pr_curve.png --eval 0.3=runs/.../metrics.json --eval 0.5=... \\
        --reference none=runs/supervise_oracle_alone/version_0/metrics.json --pass-out docs/critic_pass_vs_threshold.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402

PASS_KEY = "test/pass^1"


def _pairs(items: list[str], flag: str) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        key, sep, path = item.partition("=")
        if not sep or not key or not path:
            raise SystemExit(f"{flag} {item!r}: expected KEY=PATH, e.g. {flag} 0.5=runs/x/metrics.json")
        out.append((key, Path(path)))
    return out


def _pass1(path: Path) -> float:
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SystemExit(
            f"{path}: cannot read test metrics ({e}); give the metrics.json of a `test` run"
        ) from e
    if PASS_KEY not in metrics:
        raise SystemExit(f"{path}: no {PASS_KEY!r}; give the metrics.json of a `lightning-asym test` run")
    return float(metrics[PASS_KEY])


def plot_curve(data: dict[str, Any], out: Path) -> None:
    """PR curve (left) and expected gain / F-beta against the threshold (right)."""
    summary, points = data["summary"], data["curve"]
    chosen, fixed = summary["chosen"], summary["at_0.5"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    left.plot([p["recall"] for p in points], [p["precision"] for p in points], drawstyle="steps-post")
    left.scatter(
        [chosen["recall"]],
        [chosen["precision"]],
        color="C3",
        zorder=3,
        label=f"chosen t={chosen['threshold']:.3f}",
    )
    left.scatter([fixed["recall"]], [fixed["precision"]], color="C2", marker="x", zorder=3, label="t=0.5")
    left.axhline(
        summary["revise_rate"],
        color="grey",
        lw=0.8,
        ls="--",
        label=f"revise rate {summary['revise_rate']:.3f}",
    )
    left.set(xlabel="recall", ylabel="precision", xlim=(0, 1.02), ylim=(0, 1.02))
    left.set_title(
        f"{summary.get('split') or 'validation'} split, {summary['examples']} proposals, AP {summary['average_precision']:.3f}"
    )
    left.legend(loc="lower left", fontsize=8)
    ts = [p["threshold"] for p in points]
    right.plot(ts, [p["gain"] for p in points], drawstyle="steps-post", label="expected gain per review")
    right.plot(ts, [p["f_beta"] for p in points], drawstyle="steps-post", label=f"F{summary['beta']:g}")
    right.axvline(chosen["threshold"], color="C3", lw=0.8)
    right.axhline(0, color="grey", lw=0.8)
    right.set(xlabel="revise_threshold (revise when P(revise) >= t)", xlim=(0, 1))
    right.set_title(f"fix_prob {summary['fix_prob']}, misled_prob {summary['misled_prob']}")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_pass(
    evals: list[tuple[float, float]], refs: list[tuple[str, float]], chosen: float, out: Path
) -> None:
    """pass^1 of test runs against the threshold they used, with reference rows as flat lines."""
    fig, ax = plt.subplots(figsize=(5, 4))
    evals = sorted(evals)
    ax.plot([t for t, _ in evals], [p for _, p in evals], marker="o", label="tuned critic")
    for i, (name, value) in enumerate(refs):
        ax.axhline(value, color=f"C{i + 1}", ls="--", lw=0.8, label=name)
    ax.axvline(chosen, color="C3", lw=0.8, label="calibrated")
    ax.set(xlabel="revise_threshold", ylabel="pass^1", xlim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("calibration", type=Path, help="calibration.json from `lightning-asym validate`")
    ap.add_argument("--out", type=Path, default=None, help="PR curve PNG (default: beside the input)")
    ap.add_argument("--eval", action="append", default=[], help="THRESHOLD=metrics.json of a test run")
    ap.add_argument("--reference", action="append", default=[], help="NAME=metrics.json drawn as a flat line")
    ap.add_argument("--pass-out", type=Path, default=None, help="pass^1 vs threshold PNG (needs --eval)")
    args = ap.parse_args(argv)
    try:
        data = json.loads(args.calibration.read_text())
        data["summary"], data["curve"]
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise SystemExit(
            f"{args.calibration}: not a calibration.json from `lightning-asym validate` ({e})"
        ) from e
    out = args.out or args.calibration.with_name("pr_curve.png")
    plot_curve(data, out)
    written: dict[str, Any] = {"pr_curve": str(out)}
    if args.eval:
        try:
            evals = [(float(t), _pass1(p)) for t, p in _pairs(args.eval, "--eval")]
        except ValueError as e:
            raise SystemExit(f"--eval: the key must be the threshold the run used ({e})") from e
        refs = [(name, _pass1(p)) for name, p in _pairs(args.reference, "--reference")]
        pass_out = args.pass_out or args.calibration.with_name("pass_vs_threshold.png")
        plot_pass(evals, refs, data["summary"]["revise_threshold"], pass_out)
        written.update(pass_vs_threshold=str(pass_out), pass1={str(t): p for t, p in evals})
    print(json.dumps(written))
    return written


if __name__ == "__main__":
    main()
