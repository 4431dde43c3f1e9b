"""The unbalanced in-loop split: the actor's own proposals on validation tasks, labelled by the env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning import Trainer

from lightning_asym.datagen import ApproveAll, CriticExampleWriter, DataGenProgressBar
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.jobs import CriticDataGen, CriticTaskData
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import APPROVE, REVISE, CriticExample, read_jsonl

ERROR = 0.3


def _env() -> RetailEnv:
    return RetailEnv(num_train=2, num_validation=4, num_test=0)


class CrashAfter(CriticExampleWriter):
    """Dies between a task's examples and its ledger line, at the `n`-th task."""

    def __init__(self, output_dir, n):
        super().__init__(output_dir, val_fraction=0.5)
        self.n, self.count = n, 0

    def _append_ledger(self, line):
        self.count += 1
        if self.count == self.n:
            raise RuntimeError("simulated kill")
        super()._append_ledger(line)


def _predict(
    out: Path, writer: CriticExampleWriter | None = None, bar: DataGenProgressBar | None = None
) -> None:
    writer = writer or CriticExampleWriter(str(out), val_fraction=0.5)
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=bar is not None,
        callbacks=[writer, bar] if bar is not None else [writer],
        enable_model_summary=False,
    )
    model = CriticDataGen(NoisyOracleBackend(error_rate=ERROR), trials=1, branch_rollouts=0, inloop_trials=2)
    data = CriticTaskData(_env(), num_tasks=2, batch_size=3, inloop_split="validation", inloop_tasks=4)
    trainer.predict(model, data, return_predictions=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("inloop") / "critic"
    _predict(out)
    return out


def test_inloop_split_holds_every_proposal_at_its_natural_rate(reference):
    inloop = read_jsonl(reference / "inloop.jsonl", CriticExample)
    val_ids = {t.id for t in _env().tasks("validation")}
    assert inloop and {e.task_id for e in inloop} == val_ids
    assert {e.split for e in inloop} == {"inloop"} and {e.source for e in inloop} == {"inloop"}
    # the same episodes played here: one example per proposal, labelled by the env's check_action
    env = _env()
    engine = RolloutEngine(env, seed=0)
    trajs = engine.collect(
        env.tasks("validation"), NoisyOracleBackend(error_rate=ERROR), ApproveAll(), trials=2
    )
    labels = [p.label for t in trajs for turn in t.turns for p in turn.proposals]
    assert len(inloop) == len(labels) == sum(len(t.turns) for t in trajs)
    want = sorted(REVISE if lab["deviation"] or lab.get("violation") else APPROVE for lab in labels)
    assert sorted(e.verdict for e in inloop) == want  # no dedupe, no balancing
    revise = sum(e.verdict == REVISE for e in inloop)
    assert 0 < revise < len(inloop) - revise  # most proposals are fine, as in the loop
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["tasks"] == 2 and summary["inloop"]["tasks"] == 4
    assert summary["inloop"] == {**summary["inloop"], "examples": len(inloop), "revise": revise}
    for name in ("train", "validation"):  # the mined splits never see in-loop examples or tasks
        assert not {e.task_id for e in read_jsonl(reference / f"{name}.jsonl", CriticExample)} & val_ids


def test_approve_all_leaves_the_actors_episodes_unchanged():
    env = _env()
    engine = RolloutEngine(env, seed=0)
    tasks = env.tasks("validation")[:2]
    alone = engine.collect(tasks, NoisyOracleBackend(error_rate=ERROR), trials=2)
    reviewed = engine.collect(tasks, NoisyOracleBackend(error_rate=ERROR), ApproveAll(), trials=2)
    assert [t.messages for t in alone] == [t.messages for t in reviewed]


def test_inloop_tasks_resume_after_a_kill(reference, tmp_path):
    out = tmp_path / "critic"
    with pytest.raises(RuntimeError, match="simulated kill"):
        _predict(out, writer=CrashAfter(str(out), n=4))  # dies in the second batch, an in-loop task
    bar = DataGenProgressBar()
    _predict(out, bar=bar)
    for name in ("inloop.jsonl", "train.jsonl", "validation.jsonl"):
        assert (out / name).read_text() == (reference / name).read_text(), name
    # the bar counts in-loop tasks apart, so the hard rate stays the mined tasks' own
    assert (bar.counts["tasks"], bar.counts["inloop"]) == (2, 4)
    assert bar.predict_description.endswith("· in-loop 4")


def test_inloop_split_must_not_be_the_training_split():
    with pytest.raises(ValueError, match="data.inloop_split must differ from data.split"):
        CriticTaskData(_env(), split="train", inloop_split="train")
