"""The FastAPI app: OpenAI's routes in front of a `SupervisedProxy`.

`POST /v1/chat/completions` (JSON or server-sent events of the approved message),
`GET /v1/models`, `GET /health` (no auth), `GET /metrics` (Prometheus text). Every refusal and
failure is OpenAI's error JSON. The event loop only parses, checks limits and writes; the
supervision itself runs in a thread pool of `limits.max_concurrency` threads, and a request
beyond that is refused at once with 429 rather than queued.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lightning_asym.backends.base import SamplingParams
from lightning_asym.serve.audit import AuditLog
from lightning_asym.serve.config import BearerAuth, Limits
from lightning_asym.serve.proxy import KEY_HEADER, Outcome, SupervisedProxy, conversation_key
from lightning_asym.serve.wire import (
    ChatRequest,
    RequestError,
    completion_body,
    error_body,
    parse_chat_request,
    stream_events,
    summary_header,
)

log = logging.getLogger(__name__)


def _error(e: RequestError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status, headers=e.headers)


class _Ticket:
    """One admitted request; the pool's done-callback writes its audit line exactly once."""

    def __init__(self, request: ChatRequest, rid: str, t0: float) -> None:
        self.request, self.rid, self.t0, self.t_wall = request, rid, t0, time.time()
        self.timed_out = False


def build_app(
    proxy: SupervisedProxy,
    *,
    model_name: str,
    limits: Limits,
    defaults: SamplingParams,
    auth: BearerAuth | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """The ASGI app. `model_name` is what `/v1/models` lists and responses name."""
    pool = ThreadPoolExecutor(limits.max_concurrency, thread_name_prefix="supervise")
    metrics = proxy.metrics
    state = {"active": 0}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # let admitted requests finish (their audit lines are written on this loop), bounded
        deadline = time.monotonic() + limits.request_timeout
        while state["active"] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        pool.shutdown(wait=False)
        if audit is not None:
            audit.close()

    app = FastAPI(
        title="lightning-asym serve", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan
    )
    app.state.proxy, app.state.pool, app.state.audit = proxy, pool, audit

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        msg = f"{request.method} {request.url.path}: {exc.detail}"
        return JSONResponse(error_body(msg, kind), status_code=exc.status_code)

    def check_auth(request: Request) -> None:
        if auth is not None and not auth.check(request.headers.get("authorization")):
            metrics.inc("rejected_total", reason="auth")
            raise RequestError(
                401,
                "missing or invalid bearer token: send 'Authorization: Bearer <token>' with a token "
                f"listed in the proxy's ${auth.env}",
                type="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "in_flight": state["active"], "max_concurrency": limits.max_concurrency}

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> Response:
        try:
            check_auth(request)
        except RequestError as e:
            return _error(e)
        card = {"id": model_name, "object": "model", "created": 0, "owned_by": "lightning-asym"}
        return JSONResponse({"object": "list", "data": [card]})

    @app.get("/metrics", response_model=None)
    async def prometheus(request: Request) -> Response:
        try:
            check_auth(request)
        except RequestError as e:
            return _error(e)
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    def reject(reason: str, e: RequestError) -> JSONResponse:
        metrics.inc("rejected_total", reason=reason)
        metrics.inc("requests_total", status=str(e.status))
        return _error(e)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        too_big = RequestError(
            413,
            f"the request body is larger than the proxy accepts ({limits.max_body_bytes} bytes, "
            "limits.max_body_bytes)",
            code="request_too_large",
        )
        if declared is not None and declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise too_big
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limits.max_body_bytes:
                raise too_big
        return bytes(body)

    def finish(ticket: _Ticket, key: str, fut: Future) -> None:
        """Runs on the event loop when the worker is done: free the slot, write the audit line."""
        state["active"] -= 1
        metrics.add_in_flight(-1)
        out: Outcome = fut.result()
        answered = 504 if ticket.timed_out else out.http_status
        if ticket.timed_out:
            metrics.inc("requests_total", status="504")
            metrics.observe("request_seconds", time.perf_counter() - ticket.t0)
        if audit is not None:
            try:
                record = proxy.audit_record(
                    ticket.request, out, answered=answered, model=model_name, t_start=ticket.t_wall
                )
                audit.write(record)
            except Exception:  # noqa: BLE001  (a full disk must not take the server down)
                log.exception("could not write the audit line of %s to %s", ticket.rid, audit.path)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        t0 = time.perf_counter()
        try:
            check_auth(request)
        except RequestError as e:
            metrics.inc("requests_total", status=str(e.status))
            return _error(e)
        try:
            req = parse_chat_request(await read_body(request), limits, defaults)
        except RequestError as e:
            return reject("limit" if e.status == 413 or e.code else "invalid", e)
        if state["active"] >= limits.max_concurrency:
            return reject(
                "busy",
                RequestError(
                    429,
                    f"the proxy is supervising {limits.max_concurrency} requests (limits.max_concurrency); "
                    f"retry after {limits.retry_after} s",
                    type="rate_limit_error",
                    code="proxy_busy",
                    headers={"Retry-After": str(limits.retry_after)},
                ),
            )
        key = conversation_key(req.messages, request.headers.get(KEY_HEADER))
        rid = f"chatcmpl-{uuid.uuid4().hex}"
        ticket = _Ticket(req, rid, t0)
        state["active"] += 1
        metrics.add_in_flight(1)
        loop = asyncio.get_running_loop()
        fut = pool.submit(proxy.run, req, key, rid)
        fut.add_done_callback(lambda f: loop.call_soon_threadsafe(finish, ticket, key, f))
        waiter = asyncio.wrap_future(fut)
        try:
            out: Outcome = await asyncio.wait_for(asyncio.shield(waiter), limits.request_timeout)
        except asyncio.TimeoutError:
            ticket.timed_out = True
            msg = (
                f"the supervised request did not finish within {limits.request_timeout:g} s "
                "(limits.request_timeout): the upstream actor or the reviewer is too slow"
            )
            e = RequestError(504, msg, type="timeout_error", code="proxy_timeout")
            return _error(e)
        await asyncio.sleep(0)  # let `finish` (queued when the worker ended) write the audit line first
        headers = {"X-Request-Id": rid, "X-Conversation-Id": key}
        summary = out.summary(proxy.config.fallback)
        headers["X-Supervision"] = summary_header(summary)
        status = out.http_status
        metrics.inc("requests_total", status=str(status))
        metrics.observe("request_seconds", time.perf_counter() - t0)
        if status != 200 or out.message is None:
            kind = "upstream_error" if status in (502, 504) else "server_error"
            body = error_body(out.error or "failed", kind, code=out.status)
            body["supervision"] = summary
            return JSONResponse(body, status_code=status, headers=headers)
        model = req.model or model_name
        created = int(ticket.t_wall)
        if req.stream:
            events = stream_events(rid, created, model, out.message, out.finish, out.usage, summary)
            headers["Cache-Control"] = "no-cache"
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        body = completion_body(rid, created, model, out.message, out.finish, out.usage, summary)
        return JSONResponse(body, headers=headers)

    return app
