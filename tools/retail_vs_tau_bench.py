"""How close our retail tools are to τ-bench retail's: the same gold calls through both, final databases compared.

For each τ-bench retail task, its gold calls run twice on fresh copies of τ-bench's database:
through τ-bench's own tools and through our `run_tool` (`lightning_asym.envs.retail.tools`).
A task counts as the same when both final databases are equal. For the others the first
differing path is printed, so each difference between the two tool sets can be traced.
Usage (τ-bench importable, e.g. after `make tau-bench`):

    .venv/bin/python tools/retail_vs_tau_bench.py                  # retail test (115 tasks)
    .venv/bin/python tools/retail_vs_tau_bench.py --split train

The last line is a JSON object: tasks, same, and the differing tasks with their first difference.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lightning_asym.envs.retail.tools import run_tool  # noqa: E402
from lightning_asym.envs.tau_bench.loader import import_tau_bench  # noqa: E402


def first_difference(a: Any, b: Any, path: str = "") -> str | None:
    """The first path where `a` (τ-bench's) and `b` (ours) differ, with both values; None if equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}/{k}: tau-bench {a.get(k, '<absent>')!r:.80} ours {b.get(k, '<absent>')!r:.80}"
            d = first_difference(a[k], b[k], f"{path}/{k}")
            if d is not None:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            d = first_difference(x, y, f"{path}/{i}")
            if d is not None:
                return d
        return None
    return None if a == b else f"{path}: tau-bench {a!r:.80} ours {b!r:.80}"


def compare(split: str) -> dict[str, Any]:
    import_tau_bench()  # with the litellm stand-in if need be
    data_mod = importlib.import_module("tau_bench.envs.retail.data")
    tools_mod = importlib.import_module("tau_bench.envs.retail.tools")
    tasks_mod = importlib.import_module(
        {"test": "tau_bench.envs.retail.tasks_test", "train": "tau_bench.envs.retail.tasks_train"}.get(
            split, "tau_bench.envs.retail.tasks_dev"
        )
    )
    tasks = next(v for k, v in vars(tasks_mod).items() if k.startswith("TASKS"))
    theirs_by_name = {t.get_info()["function"]["name"]: t for t in tools_mod.ALL_TOOLS}
    base = data_mod.load_data()
    differing: dict[int, str] = {}
    for i, task in enumerate(tasks):
        theirs, ours = copy.deepcopy(base), copy.deepcopy(base)
        for a in task.actions:
            theirs_by_name[a.name].invoke(data=theirs, **copy.deepcopy(a.kwargs))
            run_tool(ours, a.name, copy.deepcopy(a.kwargs))
        d = first_difference(theirs, ours)
        if d is not None:
            differing[i] = d
    return {"split": split, "tasks": len(tasks), "same": len(tasks) - len(differing), "differing": differing}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", default="test", choices=["test", "train", "dev"])
    args = ap.parse_args()
    out = compare(args.split)
    for i, d in out["differing"].items():
        print(f"task {i}: {d}")
    print(f"{out['same']}/{out['tasks']} tasks end in the same database", flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
