"""Running the real `lightning-asym` command (and other scripts) in a subprocess from the tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cli_env() -> dict[str, str]:
    """The subprocess's environment: the tests' helpers and this checkout's package first (an
    editable install elsewhere, e.g. another worktree's, must not answer for it)."""
    here = Path(__file__).parent
    path = os.pathsep.join([str(here), str(here.parent), os.environ.get("PYTHONPATH", "")])
    # seed_everything in an earlier in-process test leaves PL_GLOBAL_SEED in os.environ; a child
    # that sets up a distributed strategy re-seeds from it (reset_seed) and a one-process child
    # does not, so two runs that should match would start from different random states
    env = {k: v for k, v in os.environ.items() if k not in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    return {**env, "HF_HUB_OFFLINE": "1", "PYTHONPATH": path.rstrip(os.pathsep)}


def run_cli(*args: str, cwd: Path, returncode: int = 0, timeout: int = 600) -> subprocess.CompletedProcess:
    """`python -m lightning_asym.cli *args` in `cwd`; asserts it exits with `returncode`."""
    env = cli_env()
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_asym.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == returncode, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc
