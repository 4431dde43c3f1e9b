"""`OpenAIBackend` against a local stdlib HTTP server that plays an OpenAI-compatible endpoint."""

from __future__ import annotations

import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cli_helpers import run_cli

from lightning_asym.backends.base import SamplingParams
from lightning_asym.backends.openai import OpenAIBackend
from lightning_asym.backends.toolcalls import format_action
from lightning_asym.errors import EndpointError, UserError
from lightning_asym.types import Action, Message

Reply = tuple[int, dict[str, Any]]


def ok(content: str | None = "hello", tool_calls: list[dict] | None = None) -> Reply:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return 200, {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if tool_calls else "stop"}
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }


def call(name: str, arguments: str, id: str = "call_x") -> dict:
    return {"id": id, "type": "function", "function": {"name": name, "arguments": arguments}}


class FakeServer:
    """Answers each POST with `script(body)`; records bodies, headers and the most requests in flight."""

    def __init__(self) -> None:
        self.script: Callable[[dict], Reply] = lambda body: ok()
        self.requests: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(
                        {
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                try:
                    status, payload = server.script(body)
                finally:
                    with server.lock:
                        server.in_flight -= 1
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def replies(self, *replies: Reply) -> None:
        """Answer the next requests with these, in order (the last one repeats)."""
        queue = list(replies)

        def script(body: dict) -> Reply:
            with self.lock:
                return queue.pop(0) if len(queue) > 1 else queue[0]

        self.script = script


@pytest.fixture
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def backend(server: FakeServer, **kw: Any) -> OpenAIBackend:
    kw = {"model": "m", "backoff": 0.01, "timeout": 5.0, "api_key_env": "LA_TEST_NO_SUCH_KEY", **kw}
    return OpenAIBackend(server.url, **kw)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CONV = [Message("system", "policy"), Message("user", "hi")]
ERROR = {"error": {"message": "bad things", "type": "x"}}


def test_retries_429_then_500_then_succeeds(server):
    server.replies((429, ERROR), (500, ERROR), ok("third time"))
    (comp,) = backend(server, max_retries=4).complete([CONV])
    assert comp.text == "third time" and comp.action == Action.reply("third time")
    assert (comp.num_prompt_tokens, comp.num_completion_tokens) == (11, 3)
    assert len(server.requests) == 3
    assert all(r["path"] == "/v1/chat/completions" for r in server.requests)


def test_gives_up_after_max_retries_with_a_clear_error(server):
    server.replies((503, ERROR))
    with pytest.raises(EndpointError) as info:
        backend(server, max_retries=2).complete([CONV])
    assert len(server.requests) == 3
    msg = str(info.value)
    assert "\n" not in msg and server.url in msg and "HTTP 503" in msg and "3 attempts" in msg
    assert "model.actor.init_args.max_retries" in msg and "bad things" in msg


def test_client_errors_are_not_retried(server):
    server.replies((400, ERROR))
    with pytest.raises(EndpointError) as info:
        backend(server, max_retries=4, config_key="model.reviewer.init_args.backend.init_args").complete(
            [CONV]
        )
    assert len(server.requests) == 1
    msg = str(info.value)
    assert "HTTP 400" in msg and "bad things" in msg and "model.reviewer.init_args.backend.init_args" in msg


def stall(seconds: float, then: Reply | None = None) -> Callable[[dict], Reply]:
    """A script whose first answer takes `seconds` (each one does if `then` is None)."""
    calls = []

    def script(body: dict) -> Reply:
        calls.append(body)
        if then is None or len(calls) == 1:
            time.sleep(seconds)
        return then or ok()

    return script


def test_a_read_timeout_is_retried_once_only_whatever_max_retries_says(server, caplog):
    # the server stalls on every request: each conversation costs it two requests, not
    # max_retries + 1 = 5, because the server is still working on the ones we gave up on
    server.script = stall(1.0)
    caplog.set_level(logging.WARNING)
    convs = [CONV, [Message("user", "other")]]
    with pytest.raises(EndpointError) as info:
        backend(server, timeout=0.2, max_retries=4, max_concurrency=2).complete(convs)
    assert len(server.requests) == 4
    msg = str(info.value)
    assert "\n" not in msg and "did not answer within 0.2 s (2 attempts" in msg
    assert "retried at most once" in msg and "model.actor.init_args.timeout" in msg
    assert "read timeout is retried at most once" in caplog.text


def test_one_stalled_answer_is_retried_and_the_retry_succeeds(server):
    server.script = stall(1.0, then=ok("late but fine"))
    (comp,) = backend(server, timeout=0.3, max_retries=4).complete([CONV])
    assert comp.text == "late but fine" and len(server.requests) == 2


def test_no_retry_at_all_with_max_retries_zero(server):
    server.script = stall(1.0)
    with pytest.raises(EndpointError, match=r"within 0.2 s \(1 attempt;"):
        backend(server, timeout=0.2, max_retries=0).complete([CONV])
    assert len(server.requests) == 1


def test_read_timeouts_default_by_role_and_connect_has_its_own():
    url = "http://127.0.0.1:1/v1"
    assert OpenAIBackend(url, "m").timeout == 300.0
    assert OpenAIBackend(url, "m", role="reviewer").timeout == 120.0
    assert OpenAIBackend(url, "m", role="user").timeout == 60.0
    b = OpenAIBackend(url, "m", role="reviewer", timeout=7, connect_timeout=2)
    timeout = b.client.timeout
    assert (timeout.read, timeout.connect) == (7.0, 2.0)
    with pytest.raises(UserError, match=r"model.actor.init_args.role must be one of"):
        OpenAIBackend(url, "m", role="critic")
    with pytest.raises(UserError, match=r"model.actor.init_args.connect_timeout must be > 0"):
        OpenAIBackend(url, "m", connect_timeout=0)


def test_a_refused_key_names_the_variable(server):
    server.replies((401, {"error": {"message": "invalid api key"}}))
    with pytest.raises(EndpointError, match=r"HTTP 401: invalid api key.*\$LA_TEST_NO_SUCH_KEY"):
        backend(server).complete([CONV])
    assert len(server.requests) == 1


def test_native_tools_go_in_the_request_and_tool_calls_become_the_action(server):
    tools = [{"type": "function", "function": {"name": "find_user", "parameters": {"type": "object"}}}]
    conv = [
        *CONV,
        Action("lookup", {"id": 1}).to_message("call_0", text=format_action(Action("lookup", {"id": 1}))),
        Message("tool", '{"ok": true}', tool_call_id="call_0", name="lookup"),
    ]
    server.replies(ok(None, [call("find_user", '{"email": "a@b.c"}')]))
    b = backend(server)
    (comp,) = b.complete(
        [conv], tools, SamplingParams(max_new_tokens=7, temperature=0, stop=["END"]), seeds=[5]
    )
    assert comp.action == Action("find_user", {"email": "a@b.c"}) and comp.parse_error is None
    assert comp.finish_reason == "tool_calls" and comp.text == format_action(comp.action)
    sent = server.requests[0]["body"]
    assert sent["tools"] == tools and sent["model"] == "m"
    assert (sent["max_tokens"], sent["temperature"], sent["stop"], sent["seed"]) == (7, 0, ["END"], 5)
    assistant, tool = sent["messages"][2:]
    assert assistant["tool_calls"][0]["id"] == "call_0" and assistant["content"] is None
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"id": 1}
    assert tool == {"role": "tool", "content": '{"ok": true}', "tool_call_id": "call_0"}

    server.replies(ok(None, [call("a", "{}"), call("b", "{}")]))
    (two,) = b.complete([conv], tools)
    assert two.action is None and "2 tool calls" in two.parse_error
    server.replies(ok(None, [call("a", "{not json")]))
    (bad,) = b.complete([conv], tools)
    assert bad.action is None and "not valid JSON" in bad.parse_error


def test_text_tool_calls_describe_tools_in_the_prompt(server):
    tools = [{"type": "function", "function": {"name": "find_user", "parameters": {"type": "object"}}}]
    server.replies(ok('<tool_call>{"name": "find_user", "arguments": {"email": "x"}}</tool_call>'))
    (comp,) = backend(server, tool_calls="text").complete([CONV], tools)
    assert comp.action == Action("find_user", {"email": "x"})
    sent = server.requests[0]["body"]
    assert "tools" not in sent and "find_user" in sent["messages"][0]["content"]


def test_the_key_is_sent_but_never_shown(server, monkeypatch, caplog):
    secret = "sk-test-SECRET-4242"
    monkeypatch.setenv("LA_TEST_KEY", secret)
    caplog.set_level(logging.DEBUG)
    server.replies((429, ERROR), ok("fine"))
    b = backend(server, api_key_env="LA_TEST_KEY")
    (comp,) = b.complete([CONV])
    assert {r["headers"]["authorization"] for r in server.requests} == {f"Bearer {secret}"}
    assert "LA_TEST_KEY" in repr(b) and secret not in repr(b) and secret not in str(b)
    assert secret not in caplog.text and "retry 1/4" in caplog.text
    assert secret not in repr(comp)
    assert secret.encode() not in pickle.dumps(b)
    assert pickle.loads(pickle.dumps(b)).complete([CONV])[0].text == "fine"


def test_a_missing_key_variable_sends_a_placeholder(server):
    backend(server).complete([CONV])
    assert server.requests[0]["headers"]["authorization"] == "Bearer EMPTY"


def test_concurrency_is_bounded_and_order_is_kept(server):
    def echo_slowly(body: dict) -> Reply:
        time.sleep(0.15)
        return ok("echo " + body["messages"][-1]["content"])

    server.script = echo_slowly
    convs = [[Message("user", f"q{i}")] for i in range(6)]
    comps = backend(server, max_concurrency=2).complete(convs)
    assert [c.text for c in comps] == [f"echo q{i}" for i in range(6)]
    assert server.max_in_flight == 2  # concurrent, and never more than the limit


def test_bad_settings_name_the_config_key():
    with pytest.raises(UserError, match=r"model.actor.init_args.tool_calls must be 'native' or 'text'"):
        OpenAIBackend("http://127.0.0.1:1/v1", "m", tool_calls="json")


def test_unreachable_endpoint_is_one_line_naming_url_and_key():
    url = f"http://127.0.0.1:{closed_port()}/v1"
    b = OpenAIBackend(url, "m", max_retries=1, backoff=0.01)
    with pytest.raises(EndpointError) as info:
        b.complete([CONV, CONV])
    msg = str(info.value)
    assert "\n" not in msg
    assert url in msg and "model.actor.init_args.base_url" in msg and "connection refused" in msg.lower()


def test_concurrent_requests_to_a_down_server_log_each_retry_round_once(caplog):
    caplog.set_level(logging.WARNING)
    b = OpenAIBackend(
        f"http://127.0.0.1:{closed_port()}/v1", "m", max_retries=2, backoff=0.01, max_concurrency=8
    )
    with pytest.raises(EndpointError):
        b.complete([CONV] * 8)
    retries = [r.getMessage() for r in caplog.records if "retry" in r.getMessage()]
    assert [m.split("; ")[1][:9] for m in retries] == ["retry 1/2", "retry 2/2"], retries  # not 8 of each


def test_cli_reports_an_unreachable_endpoint_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/v1"
    config = tmp_path / "api.yaml"
    config.write_text(
        json.dumps(
            {
                "trainer": {"logger": False, "enable_progress_bar": False},
                "model": {
                    "class_path": "lightning_asym.jobs.SupervisedAgent",
                    "init_args": {
                        "actor": {
                            "class_path": "lightning_asym.backends.openai.OpenAIBackend",
                            "init_args": {"base_url": url, "model": "m", "max_retries": 1, "backoff": 0.01},
                        },
                        "max_k": 1,
                    },
                },
                "data": {
                    "class_path": "lightning_asym.jobs.RolloutDataModule",
                    "init_args": {
                        "env": {
                            "class_path": "lightning_asym.envs.preferences.PreferencesEnv",
                            "init_args": {"num_test": 2, "max_turns": 2},
                        },
                        "batch_size": 2,
                        "test_trials": 1,
                    },
                },
            }
        )
    )
    proc = run_cli("test", "--config", str(config), cwd=tmp_path, returncode=2, timeout=300)
    # Lightning's own notices and the retry warnings come first; the error is one last line
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and proc.stderr.strip().splitlines()[-1] == errors[0], proc.stderr
    assert errors[0].startswith("error: cannot reach the OpenAI-compatible endpoint")
    assert url in errors[0] and "model.actor.init_args.base_url" in errors[0]
