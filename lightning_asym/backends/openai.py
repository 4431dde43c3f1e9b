"""`OpenAIBackend`: any OpenAI-compatible chat endpoint (OpenAI, vLLM, `transformers serve`, ...).

The conversations of one `complete` call go out concurrently, at most `max_concurrency`
requests in flight at any time (also across calls from several threads). Failed requests
are retried here, not by the client: 429, 5xx, connect timeouts and connection errors wait
`backoff * 2**attempt` seconds (with jitter) and try again, up to `max_retries` times; any
other 4xx fails at once. A *read* timeout is retried at most once: the server usually keeps
generating for the request we gave up on, so every retry adds work to a server that is
already too slow (a CPU `transformers serve` answering 10 requests for 2 episodes never
caught up). What cannot be fixed by waiting becomes an `EndpointError`, a one-line message
naming the URL and the config key, which the CLI prints without a traceback.

Timeouts are split by what they guard. Connecting (`connect_timeout`, 10 s) only needs a
listening server. Reading the answer (`timeout`) waits for a whole generation, which depends
on the role: an actor's turn is the longest generation, a reviewer's verdict is two short
lines, and a simulated user's message is one; `READ_TIMEOUTS` holds the defaults.

The API key is read from the environment variable named by `api_key_env` when the client is
made; it lives only inside the client, which is never pickled, printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import openai

from lightning_asym.backends.base import ChatBackend, Completion, SamplingParams
from lightning_asym.backends.templates import to_template_messages
from lightning_asym.backends.toolcalls import format_action, loads, parse_action
from lightning_asym.errors import EndpointError, UserError
from lightning_asym.types import RESPOND, Action, Message

log = logging.getLogger(__name__)

PLACEHOLDER_KEY = "EMPTY"
"""Sent when the key's environment variable is unset: local servers ignore the key."""
MAX_DELAY = 30.0
"""Longest wait between two attempts, in seconds."""
Role = Literal["actor", "reviewer", "user"]
READ_TIMEOUTS: dict[str, float] = {"actor": 300.0, "reviewer": 120.0, "user": 60.0}
"""Default seconds to wait for an answer, by role: a CPU server needs minutes for a long turn."""
MAX_READ_TIMEOUT_RETRIES = 1
"""Read timeouts retried per request: the server is still working on the abandoned one."""
RETRY_LOG_WINDOW = 5.0
"""Seconds within which the same error at the same retry round is logged once, whatever the requests."""


class OpenAIBackend(ChatBackend):
    """A model behind an OpenAI-compatible `/chat/completions` endpoint.

    Args:
        base_url: the API root, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8000/v1`.
        model: the model name the server expects (for `transformers serve DIR`, that DIR).
        api_key_env: the name of the environment variable holding the API key (not the key);
            if it is unset, a placeholder key is sent, which local servers accept.
        max_concurrency: most requests in flight at once, across all episodes.
        role: what this backend plays, `actor`, `reviewer` or `user` (a simulated user); it sets
            the default `timeout` (`READ_TIMEOUTS`: 300, 120 and 60 s).
        timeout: seconds to wait for one response once connected (the read timeout); None: the
            role's default. A read timeout is retried at most once, whatever `max_retries` says.
        connect_timeout: seconds to wait for the connection itself.
        max_retries: how many times a request is retried after a 429, a 5xx, a connect timeout or
            a connection error; other errors fail at once.
        backoff: seconds before the first retry; each later retry waits twice as long
            (times a random factor in [0.5, 1]), at most 30 s.
        sampling: default sampling when `complete` gets none; `stop` strings go to the API's
            `stop` (servers drop the matched string from the text), `top_k` > 0 is sent as an
            extra field (not every server accepts it).
        tool_calls: "native": tools go in the API's `tools` field and the response's
            `tool_calls` become the action; "text": tools are described in the system prompt
            and calls are parsed from `<tool_call>` tags, for servers without tool support.
        config_key: where this backend sits in the config, named in error messages
            (e.g. `model.reviewer.init_args.backend.init_args` for a critic's backend).
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        role: Role = "actor",
        timeout: float | None = None,
        connect_timeout: float = 10.0,
        max_retries: int = 4,
        backoff: float = 0.5,
        sampling: SamplingParams | None = None,
        tool_calls: str = "native",
        config_key: str = "model.actor.init_args",
    ) -> None:
        if timeout is None and role in READ_TIMEOUTS:
            timeout = READ_TIMEOUTS[role]
        checks = [
            ("tool_calls", tool_calls, tool_calls in ("native", "text"), "'native' or 'text'"),
            ("role", role, role in READ_TIMEOUTS, f"one of {sorted(READ_TIMEOUTS)}"),
            ("max_concurrency", max_concurrency, max_concurrency >= 1, ">= 1"),
            ("timeout", timeout, timeout is not None and timeout > 0, "> 0"),
            ("connect_timeout", connect_timeout, connect_timeout > 0, "> 0"),
            ("max_retries", max_retries, max_retries >= 0, ">= 0"),
            ("backoff", backoff, backoff >= 0, ">= 0"),
        ]
        for name, value, ok, want in checks:
            if not ok:
                raise UserError(f"{config_key}.{name} must be {want}, got {value!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.role = role
        self.timeout = float(timeout)  # type: ignore[arg-type]  (checked above)
        self.connect_timeout = float(connect_timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.sampling = sampling or SamplingParams()
        self.tool_calls = tool_calls
        self.config_key = config_key
        self._client: openai.OpenAI | None = None
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._said: dict[tuple[str, int], float] = {}  # (what, attempt) -> when its retry was last logged

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(base_url={self.base_url!r}, model={self.model!r}, "
            f"api_key_env={self.api_key_env!r}, tool_calls={self.tool_calls!r}, "
            f"role={self.role!r}, max_concurrency={self.max_concurrency}, timeout={self.timeout:g})"
        )

    def __getstate__(self) -> dict[str, Any]:
        # the client (which holds the key) and the semaphore are rebuilt after unpickling
        return {k: v for k, v in self.__dict__.items() if k not in ("_client", "_slots", "_said")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._client = None
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._said = {}

    @property
    def client(self) -> openai.OpenAI:
        """The `openai` client, made on first use with the key read from `api_key_env`."""
        if self._client is None:
            key = os.environ.get(self.api_key_env)
            if not key:
                log.info("$%s is not set; sending a placeholder API key", self.api_key_env)
            self._client = openai.OpenAI(
                base_url=self.base_url,
                api_key=key or PLACEHOLDER_KEY,
                timeout=openai.Timeout(self.timeout, connect=self.connect_timeout),
                max_retries=0,
            )
        return self._client

    # ------------------------------------------------------------------ completion

    def complete(
        self,
        conversations: Sequence[Sequence[Message]],
        tools: list[dict[str, Any]] | None = None,
        sampling: SamplingParams | None = None,
        *,
        keys: Sequence[Hashable] | None = None,
        seeds: Sequence[int] | None = None,
    ) -> list[Completion]:
        """One completion per conversation, in order; the requests run concurrently.

        `seeds` are sent as the API's `seed` (servers may ignore it). Raises `EndpointError`
        when the endpoint cannot be reached or refuses a request.
        """
        if seeds is not None and len(seeds) != len(conversations):
            raise ValueError(f"got {len(seeds)} seeds for {len(conversations)} conversations")
        s = sampling or self.sampling
        bodies = [
            self.request_body(c, tools, s, None if seeds is None else seeds[i])
            for i, c in enumerate(conversations)
        ]
        client = self.client  # made here, once, not racing in the worker threads
        if len(bodies) <= 1:
            return [self._complete_one(client, b) for b in bodies]
        pool = ThreadPoolExecutor(min(self.max_concurrency, len(bodies)), thread_name_prefix="openai")
        try:
            futures = [pool.submit(self._complete_one, client, b) for b in bodies]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def request_body(
        self,
        conversation: Sequence[Message],
        tools: list[dict[str, Any]] | None,
        sampling: SamplingParams,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of `chat.completions.create` for one conversation."""
        if self.tool_calls == "native":
            messages = native_messages(conversation)
        else:
            messages = to_template_messages(conversation, tools, tool_role="user")
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": sampling.max_new_tokens,
            "temperature": sampling.temperature,
        }
        if sampling.top_p < 1:
            body["top_p"] = sampling.top_p
        if sampling.top_k > 0:
            body["extra_body"] = {"top_k": sampling.top_k}
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        if seed is not None:
            body["seed"] = int(seed)
        if self.tool_calls == "native" and tools:
            body["tools"] = tools
        return body

    def _complete_one(self, client: openai.OpenAI, body: dict[str, Any]) -> Completion:
        with self._slots:
            response = self._request(client, body)
        return to_completion(response)

    def _request(self, client: openai.OpenAI, body: dict[str, Any]) -> Any:
        attempts = self.max_retries + 1
        read_timeouts = 0
        for attempt in range(attempts):
            note = ""
            try:
                return client.chat.completions.create(**body)
            except openai.APIStatusError as e:
                if e.status_code != 429 and e.status_code < 500:
                    raise EndpointError(self._rejected(e)) from e
                error: Exception = e
                what = f"HTTP {e.status_code}"
                wait = _retry_after(e)
            except openai.APITimeoutError as e:
                error, wait = e, 0.0
                if not is_read_timeout(e):
                    what = f"no connection within {self.connect_timeout:g} s"
                else:
                    read_timeouts += 1
                    if read_timeouts > MAX_READ_TIMEOUT_RETRIES or attempt + 1 == attempts:
                        raise EndpointError(self._gave_up(error, attempt + 1)) from error
                    what = f"no answer within {self.timeout:g} s (read timeout)"
                    note = "; a read timeout is retried at most once: the server may still be working on it"
            except openai.APIConnectionError as e:
                error, what, wait = e, type(e).__name__, 0.0
            if attempt + 1 == attempts:
                raise EndpointError(self._gave_up(error, attempts)) from error
            delay = max(wait, min(MAX_DELAY, self.backoff * 2**attempt * random.uniform(0.5, 1.0)))
            if self._first_to_say(what, attempt):
                log.warning(
                    "%s from %s; retry %d/%d in %.2f s%s",
                    *(what, self.base_url, attempt + 1, self.max_retries, delay, note),
                )
            time.sleep(delay)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _first_to_say(self, what: str, attempt: int) -> bool:
        """Whether this retry is worth a log line: concurrent requests to a down server all fail
        alike, and one line per retry round says it (the same error and round within 5 s are one)."""
        now = time.monotonic()
        last = self._said.get((what, attempt))
        self._said[(what, attempt)] = now
        return last is None or now - last > RETRY_LOG_WINDOW

    # ------------------------------------------------------------------ error messages

    def _gave_up(self, e: Exception, attempts: int) -> str:
        url, key = self.base_url, self.config_key
        tries = f"{attempts} attempt{'s' if attempts > 1 else ''}"
        if isinstance(e, openai.APITimeoutError) and is_read_timeout(e):
            return (
                f"the OpenAI-compatible endpoint {url} did not answer within {self.timeout:g} s "
                f"({tries}; a read timeout is retried at most once); raise {key}.timeout (the {self.role}'s read timeout), lower "
                f"{key}.max_concurrency or {key}.sampling.max_new_tokens, or check the server."
            )
        if isinstance(e, openai.APITimeoutError):
            return (
                f"cannot connect to the OpenAI-compatible endpoint {url} within {self.connect_timeout:g} s "
                f"({tries}); check {key}.base_url and that the server is up, or raise {key}.connect_timeout."
            )
        if isinstance(e, openai.APIConnectionError):
            return (
                f"cannot reach the OpenAI-compatible endpoint {url} ({key}.base_url): "
                f"{_root_cause(e)} ({tries}). Start the server or fix the URL."
            )
        status = getattr(e, "status_code", "?")
        return (
            f"the OpenAI-compatible endpoint {url} answered HTTP {status} to {tries}: {_detail(e)}. "
            f"Lower {key}.max_concurrency, raise {key}.max_retries, or check the server."
        )

    def _rejected(self, e: openai.APIStatusError) -> str:
        url, key, status = self.base_url, self.config_key, e.status_code
        head = f"the OpenAI-compatible endpoint {url} rejected the request with HTTP {status}: {_detail(e)}."
        if status in (401, 403):
            return (
                f"{head} Put a valid key in the environment variable ${self.api_key_env} ({key}.api_key_env)."
            )
        if status == 404:
            return f"{head} Check {key}.model ({self.model!r}) and that {key}.base_url ends in /v1."
        return (
            f"{head} Check {key}.model and {key}.sampling; for servers without tool support "
            f"set {key}.tool_calls to 'text'."
        )


def native_messages(conversation: Sequence[Message]) -> list[dict[str, Any]]:
    """OpenAI message dicts; every tool result gets the id of the call it answers.

    An assistant tool call whose text is only `format_action` of that call (what
    `to_completion` writes for a native call without text) is sent without the text.
    """
    out: list[dict[str, Any]] = []
    last_call_id: str | None = None
    for m in conversation:
        d = m.to_openai()
        if m.role == "assistant" and m.tool_calls:
            last_call_id = m.tool_calls[-1].id
            if [m.content] == [format_action(Action(c.name, c.arguments)) for c in m.tool_calls]:
                d["content"] = None
        if m.role == "tool":
            d.pop("name", None)  # not part of the tool message schema
            if d.get("tool_call_id") is None:
                d["tool_call_id"] = last_call_id or "call_0"
        out.append(d)
    return out


def to_completion(response: Any) -> Completion:
    """A `Completion` from a chat completion response (its first choice)."""
    usage = getattr(response, "usage", None)
    tokens = {
        "num_prompt_tokens": int(getattr(usage, "prompt_tokens", 0) or 0),
        "num_completion_tokens": int(getattr(usage, "completion_tokens", 0) or 0),
    }
    if not response.choices:
        return Completion("", None, "the endpoint returned no choices", finish_reason="error", **tokens)
    choice = response.choices[0]
    text = choice.message.content or ""
    finish = choice.finish_reason or "stop"
    calls = choice.message.tool_calls or []
    if not calls:  # a reply, or a text tool call that the server did not parse itself
        action, error = parse_action(text)
        return Completion(text, action, error, finish_reason=finish, **tokens)
    if len(calls) > 1:
        names = ", ".join(c.function.name for c in calls)
        error = f"the model made {len(calls)} tool calls in one message ({names}); make one call per turn"
        return Completion(text, None, error, finish_reason=finish, **tokens)
    action, error = _native_action(calls[0].function.name, calls[0].function.arguments)
    if action is not None and not text.strip():
        text = format_action(action)  # readable in trajectories and in a revision request
    return Completion(text, action, error, finish_reason=finish, **tokens)


def _native_action(name: str, arguments: str | None) -> tuple[Action | None, str | None]:
    try:
        args = loads(arguments) if arguments and arguments.strip() else {}
    except json.JSONDecodeError as e:
        return None, f"arguments of tool call {name!r} are not valid JSON ({e.msg}): {arguments[:200]!r}"
    except ValueError as e:  # nested deeper than toolcalls.MAX_JSON_DEPTH
        return None, f"arguments of tool call {name!r} are JSON {e}: {arguments[:200]!r}"
    if not isinstance(args, dict):
        return None, f"arguments of tool call {name!r} must be a JSON object: {arguments[:200]!r}"
    if name == RESPOND:
        return Action.reply(str(args.get("content", ""))), None
    return Action(name, args), None


def is_read_timeout(e: openai.APITimeoutError) -> bool:
    """Whether the request timed out after connecting (the server has the request), not before.

    The HTTP library's exception is the cause; its class name is compared, not the class, because
    `openai` has shipped with more than one HTTP library (`httpx`, `httpx2`).
    """
    cause = e.__cause__ or e.__context__
    return type(cause).__name__ not in ("ConnectTimeout", "PoolTimeout")


def _root_cause(e: BaseException) -> str:
    """The innermost cause's message, e.g. 'connection refused' or 'name or service not known'."""
    inner: BaseException = e
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(inner).strip()) or type(inner).__name__
    return text[:1].lower() + text[1:]


def _detail(e: Exception) -> str:
    """The server's error message, shortened to one line."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        body = body.get("error", body)
        body = body.get("message") or body.get("detail") if isinstance(body, dict) else body
    return " ".join(str(body or getattr(e, "message", "") or e).split())[:300]


def _retry_after(e: openai.APIStatusError) -> float:
    """Seconds asked for by a `Retry-After` header (capped at `MAX_DELAY`), else 0."""
    try:
        return min(MAX_DELAY, max(0.0, float(e.response.headers.get("retry-after", 0))))
    except (TypeError, ValueError):
        return 0.0
