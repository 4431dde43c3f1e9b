"""Export the critic examples of a datagen run as a chat dataset (`messages`) for `datasets`/TRL.

    python tools/export_critic_dataset.py data/critic data/critic_chat --no-include-policy --max-messages 2

reads `<src>/train.jsonl` and `<src>/validation.jsonl` (CriticExample lines), writes the same
splits in TRL's conversational form plus `prompt_options.json`; then

    datasets.load_dataset("json", data_dir="data/critic_chat")

Use the prompt options the critic will review with (`GenerativeCritic(include_policy=...,
max_messages=...)`): the prompt is rendered exactly as it is at review time.
"""

from __future__ import annotations

import argparse
import sys

from lightning_asym.datagen.hf_export import export_chat_dataset
from lightning_asym.errors import UserError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="the datagen output directory (with train.jsonl, validation.jsonl)")
    p.add_argument("out", help="where to write the chat dataset")
    p.add_argument(
        "--include-policy",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="put the env's policy in the system prompt (default: yes)",
    )
    p.add_argument("--max-messages", type=int, default=None, help="keep the latest N messages (default: all)")
    p.add_argument(
        "--earlier-actions",
        action="store_true",
        help="with --max-messages, list the tool calls the window cuts (review_prompt's earlier_actions)",
    )
    p.add_argument(
        "--privileged", action="store_true", help="show the privileged text recorded with each example"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    args = p.parse_args(argv)
    try:
        counts = export_chat_dataset(
            args.src,
            args.out,
            include_policy=args.include_policy,
            max_messages=args.max_messages,
            privileged=args.privileged,
            earlier_actions=args.earlier_actions,
            overwrite=args.overwrite,
        )
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for split, n in counts.items():
        print(f"{args.out}/{split}.jsonl: {n} examples")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
