"""Critic examples exported as a chat dataset: the exact review prompt, loadable by `datasets`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_asym.datagen.hf_export import chat_record, export_chat_dataset
from lightning_asym.errors import UserError
from lightning_asym.review.format import example_prompt, format_verdict
from lightning_asym.types import Action, CriticExample, Message, write_jsonl

ROOT = Path(__file__).parent.parent


def example(i: int, verdict: str = "revise") -> CriticExample:
    return CriticExample(
        task_id=f"t{i}",
        messages=[
            Message("system", "Policy: authenticate the user first."),
            Message("user", f"Cancel order #{i}"),
            Message("assistant", "Sure."),
            Message("user", "Go ahead."),
        ],
        text="",
        action=Action("cancel_order", {"order_id": f"#{i}"}),
        verdict=verdict,
        feedback="Authenticate the user before any write." if verdict == "revise" else "",
        source="gold",
        split="train",
        privileged="The user's goal: keep order #1.",
    )


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "critic"
    write_jsonl(d / "train.jsonl", [example(0), example(1, "approve"), example(2)])
    write_jsonl(d / "validation.jsonl", [example(3, "approve")])
    return d


def test_a_record_is_the_review_prompt_plus_the_verdict():
    ex = example(0)
    rec = chat_record(ex, include_policy=False, max_messages=2)
    prompt = example_prompt(ex, include_policy=False, max_messages=2)
    assert [m["role"] for m in rec["messages"]] == ["system", "user", "assistant"]
    # the exact strings GenerativeCritic sends, without the privileged text unless asked
    want = example_prompt(
        CriticExample(**{**ex.__dict__, "privileged": ""}), include_policy=False, max_messages=2
    )
    assert [m["content"] for m in rec["messages"][:2]] == [m.content for m in want]
    assert "keep order #1" not in rec["messages"][1]["content"]
    assert rec["messages"][2]["content"] == format_verdict("revise", ex.feedback)
    assert (rec["verdict"], rec["task_id"], rec["source"]) == ("revise", "t0", "gold")
    with_priv = chat_record(ex, include_policy=False, max_messages=2, privileged=True)
    assert [m["content"] for m in with_priv["messages"][:2]] == [m.content for m in prompt]
    assert "keep order #1" in with_priv["messages"][1]["content"]
    digest = chat_record(ex, include_policy=False, max_messages=2, earlier_actions=True)
    want = example_prompt(
        CriticExample(**{**ex.__dict__, "privileged": ""}),
        include_policy=False,
        max_messages=2,
        earlier_actions=True,
    )
    assert [m["content"] for m in digest["messages"][:2]] == [m.content for m in want]
    assert "Tool calls the agent made earlier" in digest["messages"][1]["content"]


def test_export_writes_both_splits_and_its_options_and_never_touches_the_source(src, tmp_path):
    before = {p.name: p.read_bytes() for p in src.iterdir()}
    out = tmp_path / "chat"
    counts = export_chat_dataset(src, out, include_policy=False, max_messages=4)
    assert counts == {"train": 3, "validation": 1}
    lines = [json.loads(x) for x in (out / "train.jsonl").read_text().splitlines()]
    assert [r["verdict"] for r in lines] == ["revise", "approve", "revise"]
    assert lines[0] == chat_record(example(0), include_policy=False, max_messages=4)
    options = json.loads((out / "prompt_options.json").read_text())
    assert options["include_policy"] is False and options["max_messages"] == 4
    assert options["earlier_actions"] is False
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before

    with pytest.raises(UserError, match="already exist.*--overwrite"):
        export_chat_dataset(src, out)
    assert export_chat_dataset(src, out, overwrite=True) == counts
    with pytest.raises(UserError, match="no critic examples.*lightning-asym predict"):
        export_chat_dataset(tmp_path / "empty", tmp_path / "x")


def test_datasets_loads_the_export_in_the_messages_form(src, tmp_path):
    datasets = pytest.importorskip("datasets", reason="the `data` extra installs datasets")
    out = tmp_path / "chat"
    export_chat_dataset(src, out)
    ds = datasets.load_dataset("json", data_dir=str(out), cache_dir=str(tmp_path / "cache"))
    assert set(ds) == {"train", "validation"} and ds["train"].num_rows == 3
    row = ds["train"][0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
    assert row["messages"][2]["content"].startswith("VERDICT: revise")


def test_the_tool_exports_and_reports_errors_in_one_line(src, tmp_path):
    tool = [sys.executable, str(ROOT / "tools" / "export_critic_dataset.py")]
    out = tmp_path / "chat"
    ok = subprocess.run([*tool, str(src), str(out), "--no-include-policy", "--max-messages", "2"],
                        capture_output=True, text=True, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "train.jsonl: 3 examples" in ok.stdout
    again = subprocess.run([*tool, str(src), str(out)], capture_output=True, text=True, timeout=120)
    assert (
        again.returncode == 2 and again.stderr.startswith("error: ") and len(again.stderr.splitlines()) == 1
    )
