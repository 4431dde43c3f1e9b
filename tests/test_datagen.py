"""Critic data generation: labels from both sources, clean splits, crash-safe resume, the CLI run."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from toy_env import GuessEnv

from lightning_asym.backends import ScriptedBackend
from lightning_asym.datagen import (
    CriticExampleWriter,
    DataGenConfig,
    DataGenProgressBar,
    branch_labels,
    generate,
    gold_labels,
)
from lightning_asym.datagen.balance import balance, dedupe, example_key, prepare, split_tasks
from lightning_asym.datagen.branching import branch
from lightning_asym.datagen.labels import Sample, gold_feedback
from lightning_asym.datagen.prefix import ReplayMismatch, replay
from lightning_asym.envs.retail import RetailEnv
from lightning_asym.envs.retail.oracle import NoisyOracleBackend
from lightning_asym.envs.retail.policy import AUTHENTICATE_FIRST, EXPLICIT_CONFIRMATION, NO_MADE_UP_FACTS
from lightning_asym.jobs import CriticDataGen, CriticTaskData
from lightning_asym.jobs.critic_tasks import shard
from lightning_asym.rollout.engine import RolloutEngine
from lightning_asym.types import (
    APPROVE,
    REVISE,
    Action,
    CriticExample,
    Message,
    Proposal,
    Task,
    Trajectory,
    Turn,
    read_jsonl,
)

CONFIGS = Path(__file__).parent.parent / "configs" / "critic"


def _traj(steps, success=False) -> Trajectory:
    """A hand-made trajectory: `steps` are (action, info, observation text)."""
    messages = [Message("system", content="policy"), Message("user", content="hi, cancel my order")]
    turns = []
    for i, (action, info, obs) in enumerate(steps):
        observation = [Message("tool" if not action.is_reply else "user", content=obs)]
        messages += [action.to_message(f"call_{i}"), *observation]
        turns.append(Turn(index=i, text=f"text {i}", action=action, observation=observation, info=info))
    return Trajectory(task_id="t1", messages=messages, turns=turns, success=success, trial=1)


OK = {"deviation": False, "violation": None}
FIND = Action("find_user_id_by_email", {"email": "a@b.c"})
CANCEL = Action("cancel_pending_order", {"order_id": "#W123", "reason": "no longer needed"})
WRONG = Action("cancel_pending_order", {"order_id": "#W456", "reason": "no longer needed"})


# --------------------------------------------------------------------------- gold labels


def test_gold_labels_approve_until_the_first_deviation_which_names_the_right_argument():
    traj = _traj(
        [
            (Action.reply("Your email please?"), OK, "a@b.c"),
            (FIND, OK, "user_1"),
            (WRONG, {"deviation": True, "violation": None}, "cancelled"),
            (Action.reply("Done!"), OK, "thanks"),  # off-plan from here on: not labelled
        ]
    )
    plans = [[CANCEL], [CANCEL], [Action("get_user_details", {"user_id": "x"}), CANCEL]]
    examples = gold_labels(traj, plans, privileged="goal: cancel #W123")
    assert [e.verdict for e in examples] == [APPROVE, APPROVE, REVISE]
    assert [e.info["turn"] for e in examples] == [0, 1, 2]
    assert examples[2].feedback == "Use order #W123 rather than #W456."
    assert examples[2].action == WRONG and examples[2].text == "text 2"
    assert all(e.feedback == "" for e in examples[:2])
    bounds = traj.state_boundaries()
    assert [len(e.messages) for e in examples] == bounds[:3]  # the context before each proposal
    assert all(e.source == "gold" and e.task_id == "t1" and e.info["trial"] == 1 for e in examples)
    assert examples[0].privileged == "goal: cancel #W123"


def test_gold_feedback_names_the_broken_rule():
    unauth = {
        "deviation": True,
        "rule": AUTHENTICATE_FIRST,
        "violation": "changed the database before authenticating the user",
    }
    (ex,) = gold_labels(_traj([(CANCEL, unauth, "cancelled")]), [[CANCEL]])
    assert ex.verdict == REVISE
    assert ex.feedback.startswith("Authenticate the user first with find_user_id_by_email")
    no_yes = {
        "deviation": False,
        "rule": EXPLICIT_CONFIRMATION,
        "violation": "changed the database without an explicit 'yes' from the user after describing the action",
    }
    (_, ex) = gold_labels(_traj([(FIND, OK, "user_1"), (CANCEL, no_yes, "cancelled")]), None)
    assert ex.verdict == REVISE and "explicit yes" in ex.feedback
    made_up = {
        "deviation": True,
        "rule": NO_MADE_UP_FACTS,
        "violation": "told the user an amount the data does not support (12.34)",
        "unsupported": ["12.34"],
    }
    (ex,) = gold_labels(_traj([(Action.reply("That is $12.34."), made_up, "ok")]), None)
    assert ex.feedback.startswith("The amount 12.34 is not supported")


def test_tau_bench_judgements_get_the_same_feedback_sentences():
    """τ-bench's judge (pure; no τ-bench needed) uses retail's rule ids, so the labeler's sentences
    carry over; a write off the gold plan breaks no rule and gets the right call from the plan."""
    from lightning_asym.envs.tau_bench.judge import judge_action

    auth = Action("find_user_id_by_email", {"email": "a@b.c"})
    gold = Action("cancel_pending_order", {"order_id": "#W1", "reason": "no longer needed"})
    wrong = Action("cancel_pending_order", {"order_id": "#W2", "reason": "no longer needed"})
    task = Task(id="t", instruction="", gold_actions=[auth, gold])

    def feedback(action, history):
        return gold_feedback(action, judge_action("retail", action, [gold], history, task), [gold])

    assert feedback(gold, []).startswith("Authenticate the user first with find_user_id_by_email")
    assert feedback(wrong, [auth]) == "Use order #W1 rather than #W2."
    transfer = Action("transfer_to_human_agents", {"summary": "help"})
    assert feedback(transfer, [auth]).startswith("Do not transfer to a human agent")
    assert feedback(Action("refund_everything", {}), [auth]) == (
        "This action breaks the policy: it called 'refund_everything', which is not a tool of tau-bench retail."
    )


def test_gold_labels_of_an_undetected_failure_and_rejected_proposals():
    # failed, yet the env saw no deviation: nothing may be approved
    assert gold_labels(_traj([(FIND, OK, "user_1"), (CANCEL, OK, "x")], success=False), None) == []
    # a rejected proposal keeps the env's judgement: labelled beside the action that went out
    traj = _traj([(FIND, OK, "user_1"), (CANCEL, OK, "cancelled")], success=True)
    bad = {"deviation": True, "violation": None}
    traj.turns[1].proposals = [
        Proposal("wrong text", WRONG, label=bad),
        Proposal("text 1", CANCEL, label=OK),  # the one that went out
    ]
    examples = gold_labels(traj, [[CANCEL], [CANCEL]])
    assert [(e.text, e.verdict) for e in examples] == [
        ("text 0", APPROVE),
        ("wrong text", REVISE),
        ("text 1", APPROVE),
    ]
    assert examples[1].feedback == "Use order #W123 rather than #W456." and examples[1].info["proposal"]


def test_gold_labels_from_retail_self_play_name_the_gold_order():
    env = RetailEnv(num_train=12, num_validation=0, num_test=0)
    actor = NoisyOracleBackend(error_rate=0.0, wrong_order=1.0)
    cfg = DataGenConfig(trials=1, branch_rollouts=0)
    results = generate(env.tasks("train"), env, actor, cfg)
    revises = [e for r in results for e in r.examples if e.verdict == REVISE]
    assert revises, "every write goes to a wrong order: there must be revisions"
    tasks = {t.id: t for t in env.tasks("train")}
    for e in revises:
        gold = [g for g in tasks[e.task_id].gold_actions if g.name == e.action.name]
        if "order_id" not in e.action.kwargs:  # no order to get wrong: a wrong argument instead
            assert e.feedback.startswith("Use ") and " rather than " in e.feedback
            continue
        assert e.feedback.startswith("Use order ") and e.action.kwargs["order_id"] in e.feedback
        assert any(g.kwargs["order_id"] in e.feedback for g in gold)
    assert sum(e.feedback.startswith("Use order ") for e in revises) >= len(revises) // 2
    assert all(r.hard for r in results if r.successes == 0)


def test_replay_rebuilds_the_state_and_detects_a_mismatch():
    env = RetailEnv(num_train=3, num_validation=0, num_test=0)
    task = env.tasks("train")[0]
    (traj,) = RolloutEngine(env).collect([task], NoisyOracleBackend(error_rate=0.0))
    e, plans = replay(env, task, traj, len(traj.turns) - 1)
    assert plans[0] == task.gold_actions and len(plans) == len(traj.turns)
    assert len(plans[-1]) < len(plans[0])  # the writes done on the way left the plan
    traj.turns[1].observation[0].content = "something else"
    with pytest.raises(ReplayMismatch, match="replaying turn 1"):
        replay(env, task, traj, 3)


# --------------------------------------------------------------------------- branch labels


def test_branch_labels_compare_success_rates():
    traj = _traj([(FIND, OK, "user_1"), (WRONG, OK, "x")])
    samples = [Sample("good", CANCEL, True)] * 3 + [Sample("bad", WRONG, False)] * 2
    examples = branch_labels(traj, 1, samples, margin=0.2)
    assert [(e.text, e.verdict) for e in examples] == [("good", APPROVE), ("bad", REVISE)]
    assert examples[1].feedback == (
        "This action leads to failure more often than this better action: "
        'cancel_pending_order({"order_id": "#W123", "reason": "no longer needed"}).'
    )
    assert examples[0].info["successes"] == 3 and examples[1].info["samples"] == 2
    assert all(e.source == "branch" and len(e.messages) == traj.state_boundaries()[1] for e in examples)
    # one lucky sample does not outrank a well-tried action (posterior means 4/6 and 2/3)
    mixed = [Sample("a", CANCEL, True)] * 3 + [Sample("a", CANCEL, False), Sample("b", WRONG, True)]
    assert {e.verdict for e in branch_labels(traj, 1, mixed, margin=0.0)} == {APPROVE}
    # an action the env flags is neither approved nor the better one, however often it succeeds
    flagged = [Sample("skip", WRONG, True, flagged=True)] * 4 + [
        Sample("a", CANCEL, True),
        Sample("b", FIND, False),
    ]
    out = branch_labels(traj, 1, flagged, margin=0.2)
    assert [(e.text, e.verdict) for e in out] == [("a", APPROVE), ("b", REVISE)]
    assert out[1].feedback.endswith(
        'cancel_pending_order({"order_id": "#W123", "reason": "no longer needed"}).'
    )
    # within the margin but never successful: no evidence either way, no label
    assert [e.text for e in branch_labels(traj, 1, flagged, margin=0.4)] == ["a"]
    # nothing succeeded: nothing shows a better action
    assert branch_labels(traj, 1, [Sample("a", CANCEL, False), Sample("b", WRONG, False)]) == []


def _guesser(p_right: float):
    """Asks for a hint, then guesses right with probability `p_right`, else one too high."""

    def policy(messages, task, rng):
        if "than five" not in (messages[-1].content or ""):
            return "Is it a big number?"
        n = int(task.instruction)
        n = n if rng.random() < p_right else n + 1
        return f'<tool_call>{{"name": "guess", "arguments": {{"n": {n}}}}}</tool_call>'

    return policy


def test_branching_a_fake_actor_approves_the_action_that_succeeds():
    env = GuessEnv(num_tasks=4)
    actor = ScriptedBackend(policy=_guesser(0.5))
    engine = RolloutEngine(env, seed=0)
    trajs = engine.collect(env.tasks("train"), actor, trials=2)
    failed = [(env.get_task("train", t.task_id), t) for t in trajs if not t.success]
    assert failed
    out, stats = branch(engine, actor, failed, rollouts=8, turns=2, seed=0)
    labelled = [e for exs in out.values() for e in exs]
    guesses = [e for e in labelled if e.info["turn"] == 1]
    assert {e.verdict for e in guesses} == {APPROVE, REVISE}
    for e in guesses:
        task = env.get_task("train", e.task_id)
        right = e.action.kwargs["n"] == int(task.instruction)
        assert e.verdict == (APPROVE if right else REVISE), (e.action, task.instruction)
        assert right or e.feedback.endswith(f'guess({{"n": {task.instruction}}}).')
    # the opening question is the only action at turn 0 and sometimes succeeds: approved
    assert all(e.verdict == APPROVE for e in labelled if e.info["turn"] == 0)
    assert sum(s.rollouts for s in stats.values()) == 8 * sum(s.points for s in stats.values())
    # two failed trials of one task share the turn-0 prefix: it is branched once
    per_task = {}
    for e in labelled:
        if e.info["turn"] == 0:
            per_task[e.task_id] = per_task.get(e.task_id, 0) + 1
    assert all(n == 1 for n in per_task.values())


def test_generate_mines_hard_tasks_and_labels_both_sources():
    env = RetailEnv(num_train=6, num_validation=0, num_test=0)
    cfg = DataGenConfig(trials=3, hard_threshold=0.6, branch_rollouts=3, branch_turns=3)
    results = generate(env.tasks("train"), env, NoisyOracleBackend(error_rate=0.15), cfg)
    assert [r.task_id for r in results] == [t.id for t in env.tasks("train")]
    assert all(r.hard == (r.pass_rate < 0.6) for r in results)
    assert any(r.hard for r in results)
    labels = {(e.source, e.verdict) for r in results for e in r.examples}
    assert labels == {("gold", APPROVE), ("gold", REVISE), ("branch", APPROVE), ("branch", REVISE)}
    assert all(("branch" in r.info) == r.hard for r in results if r.successes < r.trials)
    for r in results:  # trials share clean prefixes; each (context, action) is kept once per task
        assert len({example_key(e) for e in r.examples}) == len(r.examples)
    assert sum(r.info["duplicates"] for r in results) > 0
    line = results[0].ledger()
    assert line["examples"] == len(results[0].examples) and line["task_id"] == results[0].task_id
    # gold labels of hard tasks only, with the privileged task information for a privileged critic
    cfg = DataGenConfig(trials=2, hard_threshold=0.6, gold_tasks="hard", branch_rollouts=0, privileged=True)
    again = generate(env.tasks("train"), env, NoisyOracleBackend(error_rate=0.3), cfg)
    assert all(bool(r.examples) <= r.hard for r in again) and any(r.examples for r in again)
    task = env.tasks("train")[0]
    assert all(
        e.privileged == env.privileged(env.get_task("train", e.task_id)) for r in again for e in r.examples
    )
    assert env.privileged(task)
    with pytest.raises(ValueError, match="model.gold_tasks"):
        DataGenConfig(gold_tasks="some")


# --------------------------------------------------------------------------- clean data


def _ex(task_id, verdict, source="gold", say="x") -> CriticExample:
    return CriticExample(
        task_id,
        messages=[Message("user", content=f"{task_id}: {say}")],
        action=Action.reply(say),
        verdict=verdict,
        source=source,
    )


def test_dedupe_keeps_the_most_trusted_label():
    exs = [
        _ex("a", APPROVE, "gold"),
        _ex("a", REVISE, "branch"),
        _ex("a", APPROVE, "gold"),
        _ex("b", APPROVE, "branch", say="y"),
        _ex("b", REVISE, "gold", say="y"),
        _ex("c", APPROVE),
    ]
    kept, stats = dedupe(exs)
    assert [(e.task_id, e.verdict, e.source) for e in kept] == [
        ("a", REVISE, "branch"),
        ("b", REVISE, "gold"),
        ("c", APPROVE, "gold"),
    ]
    assert stats == {"duplicates": 3, "conflicts": 2}


def test_split_by_task_is_stable_and_balance_caps_the_majority():
    ids = [f"task-{i}" for i in range(200)]
    splits = split_tasks(ids, 0.2, seed=0)
    assert splits == split_tasks(list(reversed(ids)), 0.2, seed=0)
    assert 20 < sum(s == "validation" for s in splits.values()) < 60
    assert split_tasks(["a", "b"], 0.01) != {"a": "train", "b": "train"}  # small runs get validation
    exs = [_ex(f"t{i}", APPROVE, say=str(i)) for i in range(30)] + [
        _ex("r", REVISE, say=str(i)) for i in range(7)
    ]
    random.Random(0).shuffle(exs)
    out, ok = balance(exs, 2.0)
    assert ok and sum(e.verdict == APPROVE for e in out) == 14 and sum(e.verdict == REVISE for e in out) == 7
    assert out == [e for e in exs if e in out]  # order kept
    only = [e for e in exs if e.verdict == APPROVE]
    assert balance(only, 1.0) == (only, False)  # nothing to balance against: keep all, say so


def test_prepare_never_puts_a_task_in_both_splits():
    exs = [_ex(f"t{i % 40}", [APPROVE, REVISE][i % 3 == 0], say=str(i)) for i in range(400)]
    out, summary = prepare(exs + exs[:50], val_fraction=0.25, max_ratio=1.0)
    train_tasks = {e.task_id for e in out["train"]}
    val_tasks = {e.task_id for e in out["validation"]}
    assert train_tasks and val_tasks and not train_tasks & val_tasks
    assert all(e.split == name for name in out for e in out[name])
    for name in out:
        n_app = sum(e.verdict == APPROVE for e in out[name])
        assert n_app == len(out[name]) - n_app  # balanced 1:1
    assert summary["duplicates"] == 50 and summary["raw"] == 450


def test_shards_are_disjoint_and_skip_finished_tasks():
    tasks = GuessEnv(num_tasks=10).tasks("train")
    finished = {tasks[0].id, tasks[5].id}
    parts = [shard(tasks, finished, r, 3) for r in range(3)]
    ids = [t.id for p in parts for t in p]
    assert sorted(ids) == sorted(t.id for t in tasks if t.id not in finished) and len(set(ids)) == len(ids)


# --------------------------------------------------------------------------- resume


class Recorder(CriticDataGen):
    """Remembers which tasks it was asked to play."""

    played: list[str]

    def predict_step(self, batch, batch_idx):
        self.played = [*getattr(self, "played", []), *(t.id for t in batch)]
        return super().predict_step(batch, batch_idx)


class CrashAfter(CriticExampleWriter):
    """Dies between a task's examples and its ledger line, at the `n`-th task."""

    def __init__(self, output_dir, n):
        super().__init__(output_dir, val_fraction=0.25)
        self.n, self.count = n, 0

    def _append_ledger(self, line):
        self.count += 1
        if self.count == self.n:
            raise RuntimeError("simulated kill")
        super()._append_ledger(line)


def _predict(out: Path, writer=None, bar=False) -> Recorder:
    from lightning import Trainer

    writer = writer or CriticExampleWriter(str(out), val_fraction=0.25)
    callbacks = [writer, DataGenProgressBar()] if bar else [writer]
    trainer = Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=bar,
        callbacks=callbacks,
        enable_model_summary=False,
    )
    model = Recorder(NoisyOracleBackend(error_rate=0.3), trials=2, branch_rollouts=2, branch_turns=1)
    env = RetailEnv(num_train=8, num_validation=0, num_test=0)
    trainer.predict(model, CriticTaskData(env, num_tasks=8, batch_size=2), return_predictions=False)
    return model


def _lines(path: Path) -> list[str]:
    return sorted(path.read_text().splitlines())


def _ledger_ids(out: Path) -> list[str]:
    return [json.loads(x)["task_id"] for x in (out / "shards" / "done.rank0.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "critic"
    _predict(out, bar=True)
    return out


def test_a_run_writes_shards_ledger_and_balanced_splits(reference):
    shards = reference / "shards"
    assert len(_ledger_ids(reference)) == 8
    examples = read_jsonl(shards / "examples.rank0.jsonl", CriticExample)
    ledger = [json.loads(x) for x in (shards / "done.rank0.jsonl").read_text().splitlines()]
    assert sum(d["examples"] for d in ledger) == len(examples)
    train = read_jsonl(reference / "train.jsonl", CriticExample)
    val = read_jsonl(reference / "validation.jsonl", CriticExample)
    assert (
        train and val and {e.split for e in train} == {"train"} and {e.split for e in val} == {"validation"}
    )
    assert not {e.task_id for e in train} & {e.task_id for e in val}
    summary = json.loads((reference / "summary.json").read_text())
    assert summary["tasks"] == 8 and summary["train"]["examples"] == len(train)
    assert sorted(p.name for p in reference.glob("*.jsonl")) == ["train.jsonl", "validation.jsonl"]


def test_a_killed_run_resumes_without_loss_or_duplicates(reference, tmp_path):
    out = tmp_path / "critic"
    with pytest.raises(RuntimeError, match="simulated kill"):
        _predict(out, writer=CrashAfter(str(out), n=3))
    assert len(_ledger_ids(out)) == 2  # the third task's examples are on disk, its ledger line is not
    first = set(_ledger_ids(out))
    model = _predict(out)
    assert not first & set(model.played) and len(model.played) == 6  # finished tasks are skipped
    assert sorted(_ledger_ids(out)) == sorted(_ledger_ids(reference))
    for name in ("shards/examples.rank0.jsonl", "train.jsonl", "validation.jsonl"):
        assert _lines(out / name) == _lines(reference / name), name


def test_torn_lines_from_a_kill_are_dropped_and_redone(reference, tmp_path):
    out = tmp_path / "critic"
    _predict(out)
    ledger = out / "shards" / "done.rank0.jsonl"
    examples = out / "shards" / "examples.rank0.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    ledger.write_text("".join(lines[:-1]) + lines[-1][:20])  # the last ledger line was being written
    with examples.open("a") as f:
        f.write('{"task_id": "half a line')
    model = _predict(out)
    assert len(model.played) == 1  # only the task whose ledger line was torn runs again
    for name in ("shards/examples.rank0.jsonl", "shards/done.rank0.jsonl", "train.jsonl"):
        assert _lines(out / name) == _lines(reference / name), name
    again = _predict(out)  # everything finished: nothing is played, the splits are rebuilt the same
    assert getattr(again, "played", []) == []
    assert _lines(out / "validation.jsonl") == _lines(reference / "validation.jsonl")


def test_datamodule_without_a_writer_says_what_to_add():
    from lightning import Trainer

    trainer = Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    model = CriticDataGen(NoisyOracleBackend())
    with pytest.raises(ValueError, match="CriticExampleWriter in trainer.callbacks"):
        trainer.predict(model, CriticTaskData(GuessEnv(), num_tasks=2), return_predictions=False)


# --------------------------------------------------------------------------- the CLI


def test_cli_predict_datagen_tiny_writes_train_and_validation(tmp_path, monkeypatch):
    from lightning_asym.cli import main

    monkeypatch.chdir(tmp_path)
    main(["predict", "--config", str(CONFIGS / "datagen_tiny.yaml")])
    out = tmp_path / "data" / "critic_tiny"
    train = read_jsonl(out / "train.jsonl", CriticExample)
    val = read_jsonl(out / "validation.jsonl", CriticExample)
    assert {e.verdict for e in train} == {APPROVE, REVISE}
    assert val and not {e.task_id for e in train} & {e.task_id for e in val}
    assert json.loads((out / "summary.json").read_text())["tasks"] == 8


@pytest.mark.slow
def test_cli_predict_under_ddp_shards_tasks_by_rank(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    args = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    cmd = [
        sys.executable,
        "-m",
        "lightning_asym.cli",
        "predict",
        "--config",
        str(CONFIGS / "datagen_tiny.yaml"),
    ]
    proc = subprocess.run([*cmd, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-5000:]
    out = tmp_path / "data" / "critic_tiny"
    ranks = [_ledger_ids_of(out / "shards" / f"done.rank{r}.jsonl") for r in (0, 1)]
    assert ranks[0] and ranks[1] and not set(ranks[0]) & set(ranks[1])
    done = ranks[0] + ranks[1]  # the 8 mined train tasks and the config's 3 in-loop validation tasks
    assert (
        len([t for t in done if "-train-" in t]) == 8 and len([t for t in done if "-validation-" in t]) == 3
    )
    train = read_jsonl(out / "train.jsonl", CriticExample)
    assert {e.task_id for e in train} <= set(ranks[0]) | set(ranks[1])
    assert {e.task_id for e in train} & set(ranks[1]), "rank 1's examples must reach the splits"


def _ledger_ids_of(path: Path) -> list[str]:
    return [json.loads(x)["task_id"] for x in path.read_text().splitlines()]
