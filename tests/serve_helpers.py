"""Shared pieces of the proxy tests: run a `ProxyServer` on loopback, plain HTTP calls, reviewers."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import uvicorn

from lightning_asym.backends.openai import OpenAIBackend
from lightning_asym.review.base import ReviewRequest
from lightning_asym.rollout.supervision import SupervisionConfig
from lightning_asym.serve.cli import ProxyServer
from lightning_asym.serve.config import Limits
from lightning_asym.serve.testing import ApproveAll, FakeUpstream
from lightning_asym.types import APPROVE, REVISE, Review

UPSTREAM_KEY_ENV = "LA_SERVE_TEST_UPSTREAM_KEY"
UPSTREAM_KEY = "sk-upstream-SECRET-do-not-leak-4242"


class RecordingReviewer:
    """Revises any proposal whose text contains one of `bad` (or does not parse); records requests."""

    def __init__(self, bad: Sequence[str] = ("BAD",), delay: float = 0.0) -> None:
        self.bad, self.delay = list(bad), delay
        self.requests: list[ReviewRequest] = []

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        if self.delay:
            time.sleep(self.delay)
        self.requests.extend(requests)
        out = []
        for r in requests:
            if r.action is None:
                out.append(Review(REVISE, f"your tool call did not parse ({r.parse_error})"))
            elif any(b in r.text for b in self.bad):
                out.append(Review(REVISE, "do not say BAD things"))
            else:
                out.append(Review(APPROVE))
        return out


def make_server(upstream: FakeUpstream, tmp_path, reviewer=None, **kwargs: Any) -> ProxyServer:
    actor_kwargs = kwargs.pop("actor_kwargs", {})
    actor = OpenAIBackend(
        base_url=upstream.url,
        model="fake-model",
        api_key_env=UPSTREAM_KEY_ENV,
        **{"max_retries": 1, "backoff": 0.0, "timeout": 10.0, **actor_kwargs},
    )
    kwargs.setdefault("audit_log", str(tmp_path / "audit.jsonl"))
    kwargs.setdefault("supervision", SupervisionConfig(max_revisions=2))
    kwargs.setdefault("limits", Limits())
    kwargs.setdefault("accelerator", "cpu")
    return ProxyServer(actor, reviewer or ApproveAll(), **kwargs)


@contextmanager
def running(server: ProxyServer) -> Iterator[str]:
    """Serve `server` from a thread on a free loopback port; yields `http://127.0.0.1:P`."""
    config = uvicorn.Config(server.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    s = uvicorn.Server(config)
    thread = threading.Thread(target=s.run, daemon=True)
    thread.start()
    t0 = time.monotonic()
    while not s.started:
        if time.monotonic() - t0 > 20 or not thread.is_alive():
            raise RuntimeError("the proxy did not start within 20 s")
        time.sleep(0.01)
    port = s.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        s.should_exit = True
        thread.join(timeout=30)


def call(
    url: str,
    body: dict[str, Any] | bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], Any]:
    """One HTTP request; returns (status, headers with lower-case names, JSON or text body)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, hdrs, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, raw = e.code, e.headers, e.read()
    text = raw.decode()
    try:
        parsed: Any = json.loads(text)
    except json.JSONDecodeError:
        parsed = text
    return status, {k.lower(): v for k, v in hdrs.items()}, parsed


def chat(base: str, messages: list[dict[str, Any]], headers: dict[str, str] | None = None, **extra: Any):
    body = {"model": "fake-model", "messages": messages, **extra}
    return call(f"{base}/v1/chat/completions", body, headers)


def assert_openai_error(status: int, body: Any, want_status: int) -> str:
    """`body` is OpenAI's error JSON; returns its message."""
    assert status == want_status, body
    assert isinstance(body, dict) and set(body["error"]) >= {"message", "type", "param", "code"}, body
    assert body["error"]["message"]
    return body["error"]["message"]


USER = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}]
