"""A custom reviewer passes the CLI's protocol check whether it annotates its batch `list[...]` or `Sequence[...]`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from lightning_asym.review import Reviewer, ReviewRequest
from lightning_asym.types import Review

CONFIG = Path(__file__).parent.parent / "configs" / "supervise" / "oracle_rule_critic.yaml"
SEEN: list[str] = []


class ListReviewer:
    """Annotated as CONTRIBUTING.md shows it."""

    def review(self, requests: list[ReviewRequest]) -> list[Review]:
        SEEN.append("list")
        return [Review() for _ in requests]


class SequenceReviewer:
    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        SEEN.append("sequence")
        return [Review() for _ in requests]


class NotAReviewer:
    def judge(self, requests: list[ReviewRequest]) -> list[Review]:
        return []


@pytest.mark.parametrize("name, kind", [("ListReviewer", "list"), ("SequenceReviewer", "sequence")])
def test_the_cli_accepts_a_custom_reviewer_either_way(name, kind, tmp_path, monkeypatch):
    from lightning_asym.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    SEEN.clear()
    main(
        [
            "test",
            "--config",
            str(CONFIG),
            "--model.reviewer",
            f"{__name__}.{name}",
            "--data.init_args.num_test_tasks",
            "2",
            "--data.init_args.test_trials",
            "1",
            "--data.init_args.max_turns",
            "2",
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert isinstance(globals()[name](), Reviewer)
    assert SEEN and set(SEEN) == {kind}  # the custom reviewer reviewed every step
    (run,) = (tmp_path / "runs").glob("*/version_*")
    assert "test/pass^1" in json.loads((run / "metrics.json").read_text())


def test_the_cli_still_refuses_a_class_without_review(tmp_path, monkeypatch, capsys):
    from lightning_asym.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit):
        main(["test", "--config", str(CONFIG), "--model.reviewer", f"{__name__}.NotAReviewer"])
    assert "Reviewer" in capsys.readouterr().err
