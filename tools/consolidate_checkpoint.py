"""One checkpoint file from a distributed checkpoint (the directory `ModelParallelStrategy` saves).

A sharded run resumes from its directory (`fit --ckpt_path <dir>`). To load the trained module
elsewhere (`AsymmetricActorCritic.load_from_checkpoint`, `tools/export.py`) consolidate it first:
the full weights and Lightning's state (hyperparameters, loops, the env texts of tiny tokenizers)
in one file. Optimizer states are left out: they are sharded by parameter name, a form a
single-process resume would not read. Uses PyTorch's `dcp_to_torch_save`; the whole model must fit
in CPU memory.

    python tools/consolidate_checkpoint.py runs/fsdp/version_0/checkpoints/epoch=0-step=50.ckpt [OUT]

OUT defaults to the directory's name with `.full.ckpt` (`epoch=0-step=50.full.ckpt`).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

METADATA = "meta.pt"  # Lightning's non-tensor state beside the shards


def consolidate(folder: str | Path, out: str | Path | None = None) -> Path:
    """Write the distributed checkpoint `folder` as one Lightning checkpoint file; returns its path."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

    folder = Path(folder)
    if not (folder / ".metadata").is_file() or not (folder / METADATA).is_file():
        raise SystemExit(
            f"{folder}: not a distributed checkpoint (it needs .metadata and {METADATA}); "
            "a single-file checkpoint loads as it is"
        )
    target = Path(out) if out else folder.with_name(folder.name.removesuffix(".ckpt") + ".full.ckpt")
    with tempfile.TemporaryDirectory() as tmp:
        dcp_to_torch_save(folder, Path(tmp) / "full.pt")
        shards = torch.load(Path(tmp) / "full.pt", weights_only=False)
    checkpoint = torch.load(folder / METADATA, weights_only=False)
    checkpoint["state_dict"] = shards["state_dict"]
    torch.save(checkpoint, target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="a distributed checkpoint directory")
    ap.add_argument("out", nargs="?", default=None, help="the file to write")
    args = ap.parse_args()
    print(consolidate(args.checkpoint, args.out))


if __name__ == "__main__":
    main()
