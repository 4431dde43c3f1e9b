"""Critic prompt lengths in SmolLM2 tokens, by `max_messages`, with and without privileged text.

Generates critic examples from the noisy oracle on the first `--tasks` retail train tasks
(datagen with `privileged: true`, so both prompt variants come from the same examples), then
renders each training example's review prompt as `CriticSFT` does (no policy text) and reports
the median, 90th percentile and maximum prompt length and the share that fits `max_length` 512
and 1024 (room left for the answer). The last line is one JSON object of figures.

    HF_HUB_OFFLINE=1 python tools/critic_prompt_lengths.py --tasks 40 --out /tmp/critic_prompts
"""

from __future__ import annotations

import argparse
import json
import tempfile

from lightning import Trainer

from lightning_asym.backends.hf import TransformersBackend
from lightning_asym.backends.loading import load_model_and_tokenizer
from lightning_asym.datagen import CriticExampleWriter
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.jobs import CriticDataGen, CriticTaskData
from lightning_asym.jobs.critic_data import CriticEncoder
from lightning_asym.types import CriticExample, read_jsonl

ANSWER_ROOM = 12  # tokens of `VERDICT: ...` plus a short feedback line, left out of each budget


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=40, help="retail train tasks to generate examples from")
    ap.add_argument("--error-rate", type=float, default=0.15)
    ap.add_argument("--out", default=None, help="datagen output directory (default: a temporary one)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="critic_prompts_")
    writer = CriticExampleWriter(out, val_fraction=0.1)
    Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer]).predict(
        CriticDataGen(NoisyOracleBackend(error_rate=args.error_rate), trials=4, privileged=True),
        CriticTaskData(RetailEnv(seed=0, max_turns=40), num_tasks=args.tasks, batch_size=20),
        return_predictions=False,
    )
    examples = read_jsonl(f"{out}/train.jsonl", CriticExample)
    hf, tok = load_model_and_tokenizer("smollm2")
    renderer = TransformersBackend(hf, tok)
    figures: dict[str, object] = {"examples": len(examples), "tasks": args.tasks}
    for privileged in (False, True):
        for keep in (2, 4, 8, None):
            enc = CriticEncoder(
                tok,
                lambda m: renderer.render(m, add_generation_prompt=True),
                renderer.end_of_turn,
                10**6,
                include_policy=False,
                max_messages=keep,
                privileged=privileged,
            )
            lengths = sorted(len(enc.prompt_ids(e)) for e in examples)
            n = len(lengths)
            figures[f"privileged={privileged},max_messages={keep}"] = {
                "median": lengths[n // 2],
                "p90": lengths[int(n * 0.9)],
                "max": lengths[-1],
                "fits_512": round(sum(x <= 512 - ANSWER_ROOM for x in lengths) / n, 3),
                "fits_1024": round(sum(x <= 1024 - ANSWER_ROOM for x in lengths) / n, 3),
            }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
