"""Test doubles for the proxy: a stdlib fake OpenAI upstream on loopback and a no-op reviewer.

`FakeUpstream` answers `POST /v1/chat/completions` with whatever its `responder(body)` returns
(a reply, a native tool call, an HTTP error, a delay or bytes that are not JSON) and records
every request it got (body and `Authorization` header), so a test can check what the proxy
forwarded. It is a `ThreadingHTTPServer` with keep-alive, bound to 127.0.0.1 only. Run as a
module it serves canned replies for `tools/bench_serve.py`, failing a given fraction with 500.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from lightning_asym.review.base import ReviewRequest
from lightning_asym.types import Review


@dataclass
class Reply:
    """What the fake upstream sends back: a JSON body (or raw bytes) with a status, after a delay."""

    body: dict[str, Any] | bytes
    status: int = 200
    delay: float = 0.0


def chat_reply(text: str, model: str = "fake") -> Reply:
    return Reply(_completion({"role": "assistant", "content": text}, "stop", model))


def tool_reply(name: str, arguments: dict[str, Any] | str, model: str = "fake") -> Reply:
    args = arguments if isinstance(arguments, str) else json.dumps(arguments)
    call = {"id": "call_up_0", "type": "function", "function": {"name": name, "arguments": args}}
    return Reply(
        _completion({"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", model)
    )


def error_reply(status: int, message: str = "upstream failure") -> Reply:
    return Reply({"error": {"message": message, "type": "server_error", "param": None, "code": None}}, status)


def _completion(message: dict[str, Any], finish: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
    }


class _Server(ThreadingHTTPServer):
    request_queue_size = 1024  # the default backlog of 5 drops SYNs of 100 clients (1 s retransmits)


class FakeUpstream:
    """A fake OpenAI-compatible server on 127.0.0.1 (port 0: any free port).

    Args:
        responder: body of each chat request -> `Reply`; default: the reply "ok".
    """

    def __init__(self, responder: Callable[[dict[str, Any]], Reply] | None = None, port: int = 0) -> None:
        self.responder = responder or (lambda body: chat_reply("ok"))
        self.requests: list[dict[str, Any]] = []
        self.authorizations: list[str | None] = []
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real servers
            disable_nagle_algorithm = True  # headers and body go in two writes: no 40 ms delayed-ACK stall

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                self._send(Reply({"object": "list", "data": [{"id": "fake", "object": "model"}]}))

            def do_POST(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(n) or b"{}")
                with upstream._lock:
                    upstream.requests.append(body)
                    upstream.authorizations.append(self.headers.get("authorization"))
                self._send(upstream.responder(body))

            def _send(self, reply: Reply) -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                    pass

        self.server = _Server(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def start(self) -> FakeUpstream:
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-upstream")
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ApproveAll:
    """A reviewer that approves every proposal: the proxy then only logs and measures
    (an audit-only deployment, and the no-op baseline of `tools/bench_serve.py`)."""

    def review(self, requests: Sequence[ReviewRequest]) -> list[Review]:
        return [Review() for _ in requests]


def main(args: list[str] | None = None) -> None:
    """`python -m lightning_asym.serve.testing --port P [--fail-rate F]`: a canned upstream."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--fail-rate", type=float, default=0.0, help="fraction of requests answered with HTTP 500")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(args)
    rng, lock = random.Random(a.seed), threading.Lock()

    def respond(body: dict[str, Any]) -> Reply:
        with lock:
            fail = rng.random() < a.fail_rate
        return error_reply(500, "injected fault") if fail else chat_reply("ok")

    up = FakeUpstream(respond, port=a.port)
    print(f"fake upstream on {up.url}", flush=True)
    up.server.serve_forever()


if __name__ == "__main__":
    main()
