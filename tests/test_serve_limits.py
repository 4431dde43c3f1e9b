"""The proxy's security and failure behaviour: bearer auth, secrets kept in, size limits, the
concurrency cap (429), upstream 500s, timeouts and malformed output (502/504, never a hang)."""

from __future__ import annotations

import json
import logging
import threading
import time

import pytest
from serve_helpers import (
    UPSTREAM_KEY,
    UPSTREAM_KEY_ENV,
    USER,
    RecordingReviewer,
    assert_openai_error,
    call,
    chat,
    make_server,
    running,
)

from lightning_asym.errors import UserError
from lightning_asym.serve.config import BearerAuth, Limits
from lightning_asym.serve.testing import FakeUpstream, Reply, chat_reply, error_reply, tool_reply
from lightning_asym.types import Trajectory, read_jsonl

CLIENT_TOKEN = "client-token-SECRET-1234"


def test_bearer_auth_and_no_secret_crosses_the_proxy(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LA_SERVE_TEST_TOKENS", f"other-token, {CLIENT_TOKEN}")
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    caplog.set_level(logging.DEBUG)
    ok = {"Authorization": f"Bearer {CLIENT_TOKEN}"}
    with (
        FakeUpstream() as up,
        running(make_server(up, tmp_path, auth_tokens_env="LA_SERVE_TEST_TOKENS")) as base,
    ):
        none = chat(base, USER)
        wrong = chat(base, USER, headers={"Authorization": "Bearer nope"})
        basic = chat(base, USER, headers={"Authorization": f"Basic {CLIENT_TOKEN}"})
        good = chat(base, USER, headers=ok)
        models_denied, models_ok = call(f"{base}/v1/models"), call(f"{base}/v1/models", headers=ok)
        metrics_denied, metrics_ok = call(f"{base}/metrics"), call(f"{base}/metrics", headers=ok)
        health = call(f"{base}/health")
    for status, headers, body in (none, wrong, basic, models_denied, metrics_denied):
        message = assert_openai_error(status, body, 401)
        assert "LA_SERVE_TEST_TOKENS" in message and body["error"]["type"] == "authentication_error"
        assert headers["www-authenticate"] == "Bearer"
    assert good[0] == models_ok[0] == metrics_ok[0] == health[0] == 200
    assert len(up.requests) == 1  # refused requests never reach the upstream
    assert up.authorizations == [f"Bearer {UPSTREAM_KEY}"]  # the upstream's key, not the client's
    outward = json.dumps([good, models_ok, metrics_ok, health]) + caplog.text
    outward += (tmp_path / "audit.jsonl").read_text()
    assert UPSTREAM_KEY not in outward and CLIENT_TOKEN not in outward
    assert 'lightning_asym_serve_rejected_total{reason="auth"} 5' in metrics_ok[2]


def test_auth_env_must_hold_a_token(monkeypatch):
    monkeypatch.delenv("LA_SERVE_NO_TOKENS", raising=False)
    with pytest.raises(UserError, match=r"\$LA_SERVE_NO_TOKENS.*auth_tokens_env"):
        BearerAuth("LA_SERVE_NO_TOKENS")
    monkeypatch.setenv("LA_SERVE_NO_TOKENS", " , ")
    with pytest.raises(UserError, match="unset or empty"):
        BearerAuth("LA_SERVE_NO_TOKENS")
    monkeypatch.setenv("LA_SERVE_NO_TOKENS", "tok-alpha,tok-beta")
    auth = BearerAuth("LA_SERVE_NO_TOKENS")
    assert auth.check("Bearer tok-beta") and auth.check("bearer tok-alpha") and not auth.check("Bearer tok")
    assert not auth.check(None) and not auth.check("tok-alpha") and "tok-" not in repr(auth)


def test_limits_are_4xx_in_openai_error_shape(tmp_path):
    limits = Limits(max_body_bytes=4000, max_messages=3, max_tools=2, max_tools_bytes=600, max_tokens=100)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    big_tool = {"type": "function", "function": {"name": "g", "description": "x" * 700}}
    cases = [
        (b"{not json", 400, None, "not valid JSON"),
        (json.dumps({"messages": []}).encode(), 400, "messages", "non-empty"),
        (json.dumps({"messages": USER * 2}).encode(), 400, "messages", "limits.max_messages"),
        (json.dumps({"messages": USER, "tools": [tool] * 3}).encode(), 400, "tools", "limits.max_tools"),
        (
            json.dumps({"messages": USER, "tools": [big_tool]}).encode(),
            400,
            "tools",
            "limits.max_tools_bytes",
        ),
        (json.dumps({"messages": USER, "max_tokens": 101}).encode(), 400, "max_tokens", "limits.max_tokens"),
        (json.dumps({"messages": USER, "temperature": 9}).encode(), 400, "temperature", "temperature"),
        (
            json.dumps({"messages": [{"role": "wizard", "content": "hi"}]}).encode(),
            400,
            "messages[0]",
            "role",
        ),
        (json.dumps({"messages": USER, "pad": "x" * 5000}).encode(), 413, None, "limits.max_body_bytes"),
    ]
    with FakeUpstream() as up, running(make_server(up, tmp_path, limits=limits)) as base:
        results = [call(f"{base}/v1/chat/completions", raw) for raw, *_ in cases]
        ok = chat(base, USER, max_tokens=100)
    for (raw, want, param, words), (status, _, body) in zip(cases, results):
        message = assert_openai_error(status, body, want)
        assert words in message, (raw[:60], message)
        assert body["error"]["param"] == param
    assert ok[0] == 200 and len(up.requests) == 1
    assert up.requests[0]["max_tokens"] == 100


def test_a_full_proxy_answers_429_with_retry_after(tmp_path):
    gate = threading.Event()

    def slow(body):
        gate.wait(20)
        return chat_reply("ok")

    limits = Limits(max_concurrency=1, retry_after=3)
    with FakeUpstream(slow) as up, running(make_server(up, tmp_path, limits=limits)) as base:
        first: list = []
        t = threading.Thread(target=lambda: first.append(chat(base, USER)))
        t.start()
        deadline = time.monotonic() + 20
        while not up.requests and time.monotonic() < deadline:
            time.sleep(0.02)
        status, headers, body = chat(base, USER)
        gate.set()
        t.join(30)
        after = chat(base, USER)
    assert_openai_error(status, body, 429)
    assert headers["retry-after"] == "3" and "limits.max_concurrency" in body["error"]["message"]
    assert body["error"]["type"] == "rate_limit_error"
    assert first[0][0] == 200 and after[0] == 200  # the slot is free again


def test_upstream_500_after_retries_is_a_502_with_a_clear_message(tmp_path):
    with FakeUpstream(lambda body: error_reply(500, "model crashed")) as up:
        with running(make_server(up, tmp_path, actor_kwargs={"max_retries": 2})) as base:
            status, headers, body = chat(base, USER)
            _, _, metrics = call(f"{base}/metrics")
    message = assert_openai_error(status, body, 502)
    assert "HTTP 500" in message and "model crashed" in message and up.url in message
    assert body["error"]["code"] == "upstream_error" and len(up.requests) == 3
    assert headers["x-supervision"].startswith("proposals=0")
    assert 'lightning_asym_serve_upstream_errors_total{kind="error"} 1' in metrics
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert traj.info["status"] == "upstream_error" and traj.info["http_status"] == 502 and not traj.turns


def test_upstream_timeout_is_a_504_not_a_hang(tmp_path):
    with FakeUpstream(lambda body: Reply(chat_reply("late").body, delay=3.0)) as up:
        server = make_server(up, tmp_path, actor_kwargs={"timeout": 0.3, "max_retries": 0})
        with running(server) as base:
            t0 = time.monotonic()
            status, _, body = chat(base, USER)
            elapsed = time.monotonic() - t0
    message = assert_openai_error(status, body, 504)
    assert "did not answer within 0.3 s" in message and elapsed < 3.0


def test_a_slow_reviewer_hits_the_request_timeout_and_is_still_audited(tmp_path):
    limits = Limits(request_timeout=0.3)
    with FakeUpstream() as up:
        with running(make_server(up, tmp_path, RecordingReviewer(delay=1.0), limits=limits)) as base:
            status, _, body = chat(base, USER)
            time.sleep(1.5)  # the review finishes in the background; its audit line follows
    message = assert_openai_error(status, body, 504)
    assert "limits.request_timeout" in message and body["error"]["code"] == "proxy_timeout"
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert traj.info["http_status"] == 504 and traj.turns[0].proposals[0].review.approved


def test_malformed_upstream_output(tmp_path):
    calls = iter(range(100))

    def broken_then_fixed(body):
        if next(calls) == 0:
            return tool_reply("get_weather", "{city: Paris")  # arguments are not JSON
        return tool_reply("get_weather", {"city": "Paris"})

    with (
        FakeUpstream(broken_then_fixed) as up,
        running(make_server(up, tmp_path, RecordingReviewer())) as base,
    ):
        fixed = chat(base, USER)
    assert fixed[0] == 200 and fixed[2]["supervision"]["verdicts"] == ["revise", "approve"]
    assert "did not parse" in up.requests[1]["messages"][-1]["content"]

    # an approve-all reviewer lets the broken call through: the proxy cannot send it, so 502
    with (
        FakeUpstream(lambda body: tool_reply("f", "[1, 2")) as up,
        running(make_server(up, tmp_path)) as base,
    ):
        status, _, body = chat(base, USER)
    message = assert_openai_error(status, body, 502)
    assert "could not be parsed" in message and body["error"]["code"] == "malformed"

    # a 200 whose body is not a chat completion
    with (
        FakeUpstream(lambda body: Reply(b"<html>oops</html>")) as up,
        running(make_server(up, tmp_path)) as base,
    ):
        status, _, body = chat(base, USER)
    assert "upstream actor failed" in assert_openai_error(status, body, 502)
    statuses = [t.info["status"] for t in read_jsonl(tmp_path / "audit.jsonl", Trajectory)]
    assert statuses == ["ok", "malformed", "upstream_error"]


class BrokenReviewer:
    def review(self, requests):
        raise RuntimeError("critic model ran out of memory")


def test_a_failing_reviewer_is_a_502_naming_the_reviewer(tmp_path):
    with FakeUpstream() as up, running(make_server(up, tmp_path, BrokenReviewer())) as base:
        status, _, body = chat(base, USER)
        healthy = call(f"{base}/health")
    message = assert_openai_error(status, body, 502)
    assert "the reviewer failed" in message and "out of memory" in message
    assert body["error"]["code"] == "reviewer_error" and healthy[0] == 200
    (traj,) = read_jsonl(tmp_path / "audit.jsonl", Trajectory)
    assert traj.info["status"] == "reviewer_error" and traj.info["http_status"] == 502
