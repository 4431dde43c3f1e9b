"""`CriticDataModule`: the critic examples written by the datagen step, as batches for `CriticSFT`.

The datagen step (`lightning-asym predict`) writes `CriticExample` lines into JSONL shards
under one directory; each example carries its split (`train` or `validation`, assigned by
task, so no task is on both sides; `inloop` for the unbalanced calibration split). This module reads every shard (or a single file), splits
the examples by that field and yields plain lists of `CriticExample`: rendering the prompt
and tokenizing belong to the LightningModule, which owns the tokenizer and the chat template,
and does them with the `CriticEncoder` below (prompt and answer ids, the answer-only label
mask, the feedback tokens, and where the verdict is decided).
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning import LightningDataModule
from torch.utils.data import DataLoader

from lightning_asym.errors import UserError
from lightning_asym.jobs.resumable import ResumableLoader
from lightning_asym.review.format import format_verdict, review_prompt
from lightning_asym.review.verdict import verdict_probe
from lightning_asym.types import APPROVE, REVISE, CriticExample, Message, read_jsonl

log = logging.getLogger(__name__)

CRITIC_SPLITS = ("train", "validation", "inloop")
VAL_SPLITS = ("validation", "inloop")
DATAGEN_HINT = (
    "run the datagen predict step first (`lightning-asym predict --config configs/critic/datagen.yaml`)"
)


def shard_paths(path: str | Path) -> list[Path]:
    """The JSONL files of `path`: the file itself, or a directory's `*.jsonl` in name order."""
    p = Path(path).expanduser()
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise UserError(
            f"data.init_args.path: {p} does not exist; point it at the critic examples, or {DATAGEN_HINT}"
        )
    files = sorted(f for f in p.glob("*.jsonl") if f.is_file())
    if not files:
        raise UserError(f"data.init_args.path: {p} holds no *.jsonl shards; {DATAGEN_HINT}")
    return files


def load_examples(path: str | Path) -> list[CriticExample]:
    """Every `CriticExample` under `path`; a corrupt line raises `JSONLError` naming file:line."""
    return [ex for f in shard_paths(path) for ex in read_jsonl(f, CriticExample)]


def _as_list(batch: list[CriticExample]) -> list[CriticExample]:
    return list(batch)


class CriticDataModule(LightningDataModule):
    """Train and validation batches (lists of `CriticExample`) from the datagen's JSONL output.

    Args:
        path: a directory of `*.jsonl` shards, or one JSONL file.
        batch_size: examples per batch.
        num_workers: DataLoader workers (batches are plain lists; 0 is usually enough).
        max_examples: keep at most this many examples of each split, a seeded random subset
            (None: all); for quick runs on a large dataset.
        seed: the seed of that subset.
        val_split: what the validation loop reads: `validation` (balanced, held-out tasks of the
            datagen's split) or `inloop` (the actor's own proposals on the env's validation
            tasks at their natural rate, `inloop.jsonl`), which `lightning-asym validate`
            calibrates `revise_threshold` on.

    Train batches are reshuffled every epoch (seeded by Lightning's `seed_everything`), and a fit
    resumed from a mid-epoch checkpoint goes on with the batches it had not yet seen
    (`jobs.resumable.ResumableLoader`); validation keeps file order. A path without validation examples gives no validation loop.
    The prompt options (`include_policy`, `max_messages`) are the model's (`CriticSFT`), so the
    critic that is trained and the one that is later loaded for review share one setting.
    """

    def __init__(
        self,
        path: str = "data/critic",
        batch_size: int = 8,
        num_workers: int = 0,
        max_examples: int | None = None,
        seed: int = 0,
        val_split: str = "validation",
    ) -> None:
        super().__init__()
        if val_split not in VAL_SPLITS:
            raise UserError(f"data.init_args.val_split must be one of {VAL_SPLITS}, got {val_split!r}")
        if batch_size < 1:
            raise UserError(f"data.init_args.batch_size must be >= 1, got {batch_size}")
        if max_examples is not None and max_examples < 1:
            raise UserError(f"data.init_args.max_examples must be >= 1 or null (all), got {max_examples}")
        self.path = path
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.max_examples = max_examples
        self.seed = seed
        self.val_split = val_split
        self.examples: dict[str, list[CriticExample]] | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.examples is not None:
            return
        by_split: dict[str, list[CriticExample]] = {s: [] for s in CRITIC_SPLITS}
        unknown: Counter[str] = Counter()
        for ex in load_examples(self.path):
            if ex.split in by_split:
                by_split[ex.split].append(ex)
            else:
                unknown[ex.split] += 1
        if unknown:
            log.warning("skipped examples of unknown split(s) %s (expected %s)", dict(unknown), CRITIC_SPLITS)
        if self.max_examples is not None:
            for split, exs in by_split.items():
                if len(exs) > self.max_examples:
                    keep = sorted(
                        random.Random(f"{self.seed}/{split}").sample(range(len(exs)), self.max_examples)
                    )
                    by_split[split] = [exs[i] for i in keep]
        if stage == "validate" and not by_split[self.val_split]:
            hint = (
                "write it with the datagen's data.init_args.inloop_split: validation"
                if self.val_split == "inloop"
                else DATAGEN_HINT
            )
            raise UserError(
                f"data.init_args.path: {self.path} has no examples with split {self.val_split!r} "
                f"(data.init_args.val_split); {hint}"
            )
        if stage in (None, "fit") and not by_split["train"]:
            raise UserError(
                f"data.init_args.path: {self.path} has no examples with split 'train' "
                f"({sum(map(len, by_split.values()))} others); {DATAGEN_HINT}"
            )
        self.examples = by_split
        for split, exs in by_split.items():
            counts = Counter(ex.verdict for ex in exs)
            log.info(
                "critic data %s: %d examples (%d %s, %d %s)",
                split,
                len(exs),
                counts[APPROVE],
                APPROVE,
                counts[REVISE],
                REVISE,
            )

    def _split(self, split: str) -> list[CriticExample]:
        if self.examples is None:
            self.setup()
        assert self.examples is not None
        return self.examples[split]

    def _loader(self, examples: list[CriticExample], shuffle: bool) -> DataLoader:
        cls = ResumableLoader if shuffle else DataLoader  # a resumed fit goes on through its epoch
        return cls(
            examples,  # type: ignore[arg-type]
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=_as_list,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._split("train"), shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        examples = self._split(self.val_split)
        return self._loader(examples, shuffle=False) if examples else []


# --------------------------------------------------------------------------- tokenization


@dataclass
class EncodedExample:
    """One example's token ids: the rendered prompt (possibly cut on the left), then the answer.

    `feedback` holds the indices (into `ids`) of the answer tokens that spell the feedback.
    `shortened` says the prompt lost transcript messages to fit `max_length`; `dropped` counts
    the prompt tokens cut on the left when even one message did not fit.
    """

    ids: list[int]
    answer_start: int
    feedback: list[int]
    revise: bool
    shortened: bool = False
    dropped: int = 0


class CriticEncoder:
    """Token ids of critic examples, rendered exactly as the critic reads them at review time.

    The prompt is `review_prompt(...)` of the example through `render` (the chat template with the
    generation prompt, as `TransformersBackend.render` does for `GenerativeCritic`); the answer
    is `format_verdict(...)` followed by the template's end-of-turn string, tokenized as one
    string. Prompt and answer are tokenized separately, as at review time, where the answer's
    tokens are generated after the prompt's.

    Args:
        tokenizer: the critic's tokenizer.
        render: messages -> the prompt text (chat template, generation prompt added).
        end_of_turn: what ends the assistant's turn in that template (e.g. `<|im_end|>`).
        max_length: most tokens of prompt + answer; see `encode` for how a longer prompt is
            shortened (the answer is never cut).
        include_policy, max_messages, earlier_actions: `review_prompt` options (the critic's
            prompt options).
        privileged: show the example's privileged text (`CriticExample.privileged`) in the
            prompt; False drops it, so a data set generated with privileged text trains both.
    """

    def __init__(
        self,
        tokenizer: Any,
        render: Callable[[list[Message]], str],
        end_of_turn: str,
        max_length: int,
        include_policy: bool = True,
        max_messages: int | None = None,
        privileged: bool = False,
        earlier_actions: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        self.render = render
        self.end_of_turn = end_of_turn
        self.max_length = max_length
        self.include_policy = include_policy
        self.max_messages = max_messages
        self.privileged = privileged
        self.earlier_actions = earlier_actions
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        p = self.probe = verdict_probe(tokenizer, end_of_turn)  # the verdict position, shared with review/
        self.probe_prefix, self.approve_id, self.revise_id = p.prefix, p.approve_id, p.revise_id

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, example: CriticExample, max_messages: int | None = None) -> list[int]:
        """The rendered prompt's ids, with the latest `max_messages` (default: the critic's own)."""
        keep = max_messages if max_messages is not None else self.max_messages
        messages = review_prompt(
            example.messages,
            example.action,
            example.text,
            (example.privileged or None) if self.privileged else None,
            include_policy=self.include_policy,
            max_messages=keep,
            earlier_actions=self.earlier_actions,
        )
        return self._encode(self.render(messages))

    def fit_prompt(self, example: CriticExample, room: int) -> tuple[list[int], bool, int]:
        """The prompt in at most `room` tokens: `(ids, shortened, tokens dropped)`.

        A prompt that is too long keeps the most transcript messages that fit (the latest
        ones, after the `...` line, as `max_messages` renders them), so it still starts with
        the instruction and reads like a review-time prompt. Cutting the first tokens instead
        would teach the critic that prompts without the instruction's opening are the long
        ones, and the critic reviews full prompts. Only when the last message alone does not
        fit are the prompt's first tokens cut.
        """
        prompt = self.prompt_ids(example)
        if len(prompt) <= room:
            return prompt, False, 0
        n = sum(m.role != "system" for m in example.messages)
        lo, hi = 1, min(n, self.max_messages or n) - 1  # the most messages that fit lie in [lo, hi]
        best = None
        while lo <= hi:
            mid = (lo + hi) // 2
            ids = self.prompt_ids(example, mid)
            if len(ids) <= room:
                best, lo = ids, mid + 1
            else:
                hi = mid - 1
        if best is not None:
            return best, True, 0
        ids = self.prompt_ids(example, 1) if n > 1 else prompt
        return ids[len(ids) - room :], True, len(ids) - room

    def answer(self, verdict: str, feedback: str) -> tuple[list[int], list[int]]:
        """The answer's token ids and the indices (into them) of its feedback tokens."""
        text = format_verdict(verdict, feedback) + self.end_of_turn
        start, end = len(format_verdict(verdict, "")), len(format_verdict(verdict, feedback))
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            spans = enc["offset_mapping"]
            return list(enc["input_ids"]), [i for i, (a, b) in enumerate(spans) if b > start and a < end]
        ids = self._encode(text)
        return ids, list(range(len(self._encode(text[:start])), len(self._encode(text[:end]))))

    def encode(self, example: CriticExample) -> EncodedExample:
        answer, feedback = self.answer(example.verdict, example.feedback)
        room = self.max_length - len(answer)
        if room < 1:
            raise UserError(
                f"model.init_args.max_length={self.max_length} leaves no room for the prompt of task "
                f"{example.task_id!r}: its answer alone is {len(answer)} tokens; raise max_length"
            )
        prompt, shortened, dropped = self.fit_prompt(example, room)
        n = len(prompt)
        return EncodedExample(
            prompt + answer, n, [n + i for i in feedback], example.verdict == REVISE, shortened, dropped
        )

    def collate(self, batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
        """Right-padded tensors: `input_ids`, `attention_mask`, `labels` (-100 off the answer),
        `feedback_mask` (feedback tokens), `revise` (targets) and `verdict_pos`, the position
        whose logits predict the verdict token (-1 where the answer does not start with the
        shared verdict prefix; see `probe_batch`)."""
        width = max(len(e.ids) for e in batch)
        shape = (len(batch), width)
        ids = torch.full(shape, self.pad_id, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.long)
        labels = torch.full(shape, -100, dtype=torch.long)
        feedback = torch.zeros(shape, dtype=torch.bool)
        pos = torch.full((len(batch),), -1, dtype=torch.long)
        k = len(self.probe_prefix)
        for i, e in enumerate(batch):
            row = torch.tensor(e.ids, dtype=torch.long)
            ids[i, : len(e.ids)] = row
            mask[i, : len(e.ids)] = 1
            labels[i, e.answer_start : len(e.ids)] = row[e.answer_start :]
            feedback[i, e.feedback] = True
            if e.ids[e.answer_start : e.answer_start + k] == self.probe_prefix:
                pos[i] = e.answer_start + k - 1
        revise = torch.tensor([e.revise for e in batch], dtype=torch.long)
        return {
            "input_ids": ids,
            "attention_mask": mask,
            "labels": labels,
            "feedback_mask": feedback,
            "verdict_pos": pos,
            "revise": revise,
        }

    def probe_batch(self, batch: list[EncodedExample]) -> dict[str, torch.Tensor]:
        """Prompt + shared verdict prefix of each example, for a separate verdict forward pass."""
        return self.collate(
            [
                EncodedExample(e.ids[: e.answer_start] + self.probe_prefix, e.answer_start, [], e.revise)
                for e in batch
            ]
        )
