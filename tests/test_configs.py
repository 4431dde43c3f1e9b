"""Every YAML in configs/ parses against the code, so a config can never rot.

Each config's first line names the command it is for (`# lightning-asym <verb> --config ...`);
the test checks that the verb is real and that the whole config validates under it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lightning_asym.cli import main

ROOT = Path(__file__).parent.parent / "configs"
CONFIGS = sorted(ROOT.rglob("*.yaml"))
VERBS = ("fit", "validate", "test", "predict", "serve")


def test_there_are_configs():
    assert any(p.name == "quickstart.yaml" for p in CONFIGS)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_config_parses(path: Path, capsys):
    first = path.read_text().splitlines()[0]
    m = re.match(r"# lightning-asym (\w+) --config (\S+)", first)
    assert m, f"{path}:1 must say how to run it: '# lightning-asym <verb> --config {path.name}'"
    verb, named = m.groups()
    assert verb in VERBS, f"{path}:1 names unknown verb {verb!r}"
    assert named.endswith(path.name), f"{path}:1 names {named}, not this file"
    with pytest.raises(SystemExit) as exit_info:
        main([verb, "--config", str(path), "--print_config"])
    assert exit_info.value.code in (0, None), capsys.readouterr().err
    printed = capsys.readouterr().out
    # serve configs name an actor and a reviewer (lightning_asym/serve/cli.py), not a model and data
    parts = ("actor:", "reviewer:") if verb == "serve" else ("model:", "data:")
    assert "class_path" in printed and all(p in printed for p in parts)
