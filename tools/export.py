"""Export the actor and the value critic of a PPO checkpoint as plain transformers directories.

    .venv/bin/python tools/export.py runs/quickstart/version_0/checkpoints/<ckpt> exported/quickstart

writes `exported/quickstart/actor` (`TransformersBackend(model=...)` or
`AutoModelForCausalLM.from_pretrained` loads it) and `exported/quickstart/critic`
(`CriticModule.from_export` loads it), each with its tokenizer and a README.md model
card. The checkpoint must come from `lightning-asym fit` (its hyperparameters hold the run's
model config); the last line printed is a JSON object of the two paths.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "checkpoint", type=Path, help="a .ckpt written by `lightning-asym fit` (AsymmetricActorCritic)"
    )
    ap.add_argument("out", type=Path, help="directory to write `actor/` and `critic/` into")
    args = ap.parse_args(argv)
    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2

    from lightning_asym.jobs import AsymmetricActorCritic

    try:
        module = AsymmetricActorCritic.load_from_checkpoint(args.checkpoint, map_location="cpu")
    except TypeError as e:
        print(
            f"error: {args.checkpoint} has no model config to rebuild from ({e}); it was written by an "
            "AsymmetricActorCritic built in Python: load it there with "
            "AsymmetricActorCritic.load_from_checkpoint(ckpt, actor=..., critic=...) and call .export(dir)",
            file=sys.stderr,
        )
        return 2
    paths = module.export(args.out)
    for name, path in paths.items():
        print(f"{name}: {path}")
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
