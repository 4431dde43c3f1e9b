"""Print the scalar curves of a run's TensorBoard logs as a table (or JSON).

python tools/curves.py runs/quickstart/version_0 --tags val/success val/reward
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_scalars(run_dir: str | Path, tags: list[str] | None = None) -> dict[str, list[tuple[int, float]]]:
    """`{tag: [(step, value), ...]}` from every event file under `run_dir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[tuple[int, float]]] = {}
    files = sorted(Path(run_dir).rglob("events.out.tfevents.*"))
    if not files:
        raise SystemExit(f"no TensorBoard event files under {run_dir}")
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            if tags and tag not in tags:
                continue
            out.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return {k: sorted(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--tags", nargs="*", default=None, help="scalar tags to show (default: all)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = ap.parse_args()
    curves = read_scalars(args.run_dir, args.tags)
    if args.json:
        print(json.dumps(curves))
        return
    for tag, points in sorted(curves.items()):
        print(f"{tag}: " + "  ".join(f"{s}:{v:.3g}" for s, v in points))


if __name__ == "__main__":
    main()
