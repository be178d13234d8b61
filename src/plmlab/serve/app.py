"""The FastAPI application: routes (routes.py) that validate a request (handling.py, validation.py,
served.py), hand it to the worker (flow.py, engine.py) and format the answer (responses.py).
Nothing here computes."""

from __future__ import annotations

import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import PlmlabError
from .engine import Engine
from .guard import Guard
from .handling import Prep
from .metrics import Metrics
from .served import ServedModel
from .validation import ApiError

ROUTES = ("/", "/health", "/metrics", "/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/fill-mask",
          "/v1/fill-blanks", "/v1/text2text", "/v1/classify")


@dataclass(frozen=True)
class ServeOptions:
    max_queue: int = 64  # jobs waiting for the worker; past it: 429
    max_batch: int = 16  # rows decoded together
    batch_wait: float = 0.005  # seconds the worker waits for company
    timeout: float = 60.0  # per-request deadline, seconds: 504
    max_body: int = 1 << 20  # bytes: 413
    max_tokens: int = 256  # chat's default max_tokens (capped by the context)
    retry_after: int = 1  # seconds, the 429's Retry-After
    access_log: bool = True  # one line on stderr per request (MetricsMiddleware)
    api_key: str | None = None  # Authorization: Bearer KEY on all but / and /health: 401 (guard.py)
    allowed_hosts: tuple = ()  # Host names accepted besides IP literals and localhost: 421 (guard.py)
    allow_origins: tuple = ()  # browser origins besides the server's own that may call it: 403 (guard.py)
    request_timeout: float = 30.0  # seconds to receive a request's headers and body: 408 (protocol.py)
    prep_threads: int = 2  # threads that parse, validate and tokenise requests off the event loop
    prep_queue: int = 32  # requests waiting for those threads; past it: 429 (handling.Prep)

    def __post_init__(self) -> None:
        # an empty key (`--api-key "$UNSET"`) would quietly serve everyone; one with spaces could never be sent
        key = self.api_key
        if key is not None and (not key or not key.isascii() or not key.isprintable() or " " in key):
            raise PlmlabError("the API key must be a non-empty string of printable ASCII without spaces")


class State:
    def __init__(self, served: ServedModel, options: ServeOptions) -> None:
        self.served, self.options, self.metrics = served, options, Metrics()
        self.engine = Engine(options.max_queue, options.max_batch, options.batch_wait, self.metrics, self._fits)
        self.prep = Prep(options.prep_threads, options.prep_queue, options.retry_after)

    def _fits(self, jobs) -> bool:
        rows = [ids for j in jobs for ids in j.payload.prompts]
        return self.served.fits(rows, max(j.payload.max_tokens for j in jobs))


def create_app(served: ServedModel, options: ServeOptions | None = None):
    from fastapi import FastAPI

    state = State(served, options or ServeOptions())

    @asynccontextmanager
    async def lifespan(app):
        state.engine.start()
        yield
        state.engine.stop()  # uvicorn has drained the in-flight requests by now
        state.prep.pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="plmlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.plmlab = state
    _errors(app)
    opts = state.options
    app.add_middleware(Guard, api_key=opts.api_key, allowed_hosts=opts.allowed_hosts, allow_origins=opts.allow_origins)
    from .routes import register

    register(app, state)
    return MetricsMiddleware(app, state.metrics, state.options.access_log)


def _errors(app) -> None:
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    @app.exception_handler(ApiError)
    async def api_error(request, e: ApiError):
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(HTTPException)
    async def http_error(request, e: HTTPException):  # unknown path (404), wrong method (405)
        error = ApiError(f"{request.method} {request.url.path}: {e.detail}", status=e.status_code,
                         code="not_found" if e.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def server_error(request, e: Exception):  # a bug of the server, never a client's mistake
        error = ApiError(f"internal server error: {type(e).__name__}: {e}", status=500, type="server_error")
        return JSONResponse(error.body(), status_code=500)


class MetricsMiddleware:
    """Counts every answer by endpoint and status, times it to its last byte (streams too) and,
    with `access_log`, says so in one line on stderr: client, method, path, status, milliseconds
    and the tokens where the endpoint counts them (uvicorn's own access log is off: make_server)."""

    def __init__(self, app, metrics: Metrics, access_log: bool = True) -> None:
        self.app, self.metrics, self.access_log = app, metrics, access_log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.monotonic(), [500]
        counts = scope.setdefault("state", {}).setdefault("usage", {})  # what the route's `usage` fills in

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            endpoint = scope["path"] if scope["path"] in ROUTES else "other"
            self.metrics.requests.inc(endpoint=endpoint, status=status[0])
            self.metrics.latency.observe(time.monotonic() - start, endpoint=endpoint)
            if self.access_log:
                _log(scope, status[0], time.monotonic() - start, counts)


def _log(scope, status: int, seconds: float, counts: dict) -> None:
    """`plmlab: 127.0.0.1:50312 "POST /v1/completions" 200 41 ms prompt_tokens=5 completion_tokens=16`"""
    client = ":".join(map(str, scope.get("client") or ("-",)))
    tokens = "".join(f" {k}={v}" for k, v in counts.items())
    print(f'plmlab: {client} "{scope["method"]} {scope["path"]}" {status} {seconds * 1000:.0f} ms{tokens}',
          file=sys.stderr, flush=True)
