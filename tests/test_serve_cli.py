"""`lightning-asym serve`: the shipped configs, `--print_config`, `--help`, one-line errors, and a
real run of the verb in a subprocess in front of a fake upstream (the path a user takes)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_helpers import USER, chat

from lightning_asym.cli import main
from lightning_asym.serve.cli import make_server
from lightning_asym.serve.testing import ApproveAll, FakeUpstream
from lightning_asym.types import Trajectory, read_jsonl

ROOT = Path(__file__).parent.parent
RULE_CONFIG = ROOT / "configs" / "serve" / "retail_rule_critic.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_print_config_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["serve", "--config", str(RULE_CONFIG), "--print_config"])
    assert e.value.code in (0, None)
    printed = capsys.readouterr().out
    assert "class_path: lightning_asym.backends.openai.OpenAIBackend" in printed
    assert "class_path: lightning_asym.review.RetailRuleCritic" in printed
    assert "host: 127.0.0.1" in printed and "max_concurrency: 32" in printed
    with pytest.raises(SystemExit) as e:
        main(["serve", "--help"])
    assert e.value.code in (0, None)
    helped = capsys.readouterr().out
    assert "--limits.help" in helped and "--auth_tokens_env" in helped and "127.0.0.1" in helped


def test_config_builds_a_server_with_overrides(tmp_path):
    server = make_server(
        [
            "--config",
            str(RULE_CONFIG),
            "--actor.init_args.base_url=http://127.0.0.1:9/v1",
            "--reviewer=lightning_asym.serve.testing.ApproveAll",
            f"--audit_log={tmp_path / 'a.jsonl'}",
            "--limits.max_concurrency=3",
            "--supervision.max_revisions=1",
        ]
    )
    assert server.host == "127.0.0.1" and server.limits.max_concurrency == 3
    assert isinstance(server.proxy.reviewer, ApproveAll) and server.proxy.config.max_revisions == 1
    assert server.model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert server.proxy.task_data == {"db_seed": 0}


def test_a_bad_setting_is_one_line_naming_the_key(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("LA_SERVE_UNSET", raising=False)
    args = ["serve", "--config", str(RULE_CONFIG), "--auth_tokens_env=LA_SERVE_UNSET"]
    with pytest.raises(SystemExit) as e:
        main([*args, f"--audit_log={tmp_path / 'a.jsonl'}"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and "auth_tokens_env" in err[-1] and "$LA_SERVE_UNSET" in err[-1]


def test_the_serve_verb_runs_in_front_of_an_upstream(tmp_path):
    port = free_port()
    audit = tmp_path / "audit.jsonl"
    with FakeUpstream() as up:
        args = [
            *(sys.executable, "-m", "lightning_asym.cli", "serve", "--config", str(RULE_CONFIG)),
            f"--actor.init_args.base_url={up.url}",
            "--reviewer=lightning_asym.serve.testing.ApproveAll",
            f"--port={port}",
            f"--audit_log={audit}",
            "--log_level=warning",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
        proc = subprocess.Popen(
            args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 240
            while True:
                assert proc.poll() is None, proc.communicate()[0][-3000:]
                assert time.monotonic() < deadline, "the proxy did not start within 240 s"
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.5)
            status, headers, body = chat(base, USER)
        finally:
            proc.send_signal(signal.SIGINT)
            out = proc.communicate(timeout=60)[0]
    assert status == 200, (body, out[-3000:])
    assert body["choices"][0]["message"]["content"] == "ok"
    assert proc.returncode == 0, out[-3000:]
    (traj,) = read_jsonl(audit, Trajectory)
    assert traj.info["request_id"] == headers["x-request-id"] == body["id"]
    assert json.loads(json.dumps(traj.info))["status"] == "ok"
