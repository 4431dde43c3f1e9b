"""Datagen shards with corrupt lines (issue 15 item 10): a finished task's lost example comes back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning import Trainer

from lightning_asym.datagen import CriticExampleWriter
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.errors import UserError
from lightning_asym.jobs import CriticDataGen, CriticTaskData


class Recorder(CriticDataGen):
    """Remembers which tasks it was asked to play."""

    played: list[str]

    def predict_step(self, batch, batch_idx):
        self.played = [*getattr(self, "played", []), *(t.id for t in batch)]
        return super().predict_step(batch, batch_idx)


def _predict(out: Path, writer: CriticExampleWriter | None = None) -> Recorder:
    writer = writer or CriticExampleWriter(str(out), val_fraction=0.25)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=[writer],
        enable_model_summary=False,
    )
    model = Recorder(NoisyOracleBackend(error_rate=0.3), trials=2, branch_rollouts=2, branch_turns=1)
    env = RetailEnv(num_train=6, num_validation=0, num_test=0)
    trainer.predict(model, CriticTaskData(env, num_tasks=6, batch_size=3), return_predictions=False)
    return model


def _sorted(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


FILES = ("shards/examples.rank0.jsonl", "shards/done.rank0.jsonl", "train.jsonl", "validation.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "critic"
    _predict(out)
    return out


def test_a_corrupt_line_of_a_finished_task_is_replayed_not_lost(reference, tmp_path):
    out = tmp_path / "critic"
    _predict(out)
    examples = out / "shards" / "examples.rank0.jsonl"
    lines = examples.read_text().splitlines(keepends=True)
    victim = json.loads(lines[3])["task_id"]
    lines[3] = lines[3][:25] + "\n"  # a complete line that is no longer JSON (a bad edit, a bad disk)
    examples.write_text("".join(lines))
    writer = CriticExampleWriter(str(out), val_fraction=0.25)
    model = _predict(out, writer=writer)
    assert model.played == [victim]  # only the finished task that lost an example runs again
    assert writer.repaired[0]["corrupt"] == [f"{examples}:4"] and writer.repaired[0]["replayed"] == [victim]
    for name in FILES:  # its examples are back; the derived files do not depend on finishing order
        assert _sorted(out / name) == _sorted(reference / name), name
    assert (out / "train.jsonl").read_text() == (reference / "train.jsonl").read_text()


def test_a_valid_json_line_that_is_no_example_counts_as_corrupt(reference, tmp_path):
    out = tmp_path / "critic"
    _predict(out)
    examples = out / "shards" / "examples.rank0.jsonl"
    lines = examples.read_text().splitlines(keepends=True)
    victim = json.loads(lines[0])["task_id"]
    lines[0] = json.dumps({"task_id": victim, "verdict": "approve", "bogus": 1}) + "\n"
    examples.write_text("".join(lines))
    model = _predict(out)
    assert model.played == [victim]
    assert _sorted(examples) == _sorted(reference / "shards" / "examples.rank0.jsonl")


def test_without_example_counts_a_corrupt_line_stops_the_run_naming_it(tmp_path):
    shards = tmp_path / "critic" / "shards"
    shards.mkdir(parents=True)
    (shards / "done.rank0.jsonl").write_text('{"task_id": "a"}\n')  # a ledger line that keeps no count
    (shards / "examples.rank0.jsonl").write_text('{"task_id": "a", "verdict": "approve"}\nnot json\n')
    before = (shards / "examples.rank0.jsonl").read_text()
    with pytest.raises(UserError, match=r"examples\.rank0\.jsonl:2: not a valid example line"):
        CriticExampleWriter(str(tmp_path / "critic")).repair(0)
    assert (shards / "examples.rank0.jsonl").read_text() == before  # nothing deleted


def test_a_torn_last_line_is_a_kill_not_corruption(tmp_path):
    shards = tmp_path / "critic" / "shards"
    shards.mkdir(parents=True)
    ex = json.dumps({"task_id": "a", "verdict": "approve"})
    (shards / "done.rank0.jsonl").write_text('{"task_id": "a", "examples": 1}\n{"task_id": "b", "exa')
    (shards / "examples.rank0.jsonl").write_text(ex + '\n{"task_id": "b", "ver')
    fixed = CriticExampleWriter(str(tmp_path / "critic")).repair(0)
    assert fixed == {"ledger_dropped": 1, "examples_dropped": 1, "corrupt": [], "replayed": []}
    assert (shards / "examples.rank0.jsonl").read_text() == ex + "\n"
