"""The FastAPI application: routes that validate a request (validation.py, served.py), hand it
to the worker (flow.py, engine.py) and format the answer (responses.py). Nothing here computes."""

from __future__ import annotations

import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from .batch import GenerationRequest, run_generation
from .engine import Engine
from .metrics import Metrics
from .served import ServedModel
from .validation import ApiError, parse_body, validate

STATIC = Path(__file__).parent / "static"
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


class State:
    def __init__(self, served: ServedModel, options: ServeOptions) -> None:
        self.served, self.options, self.metrics = served, options, Metrics()
        self.engine = Engine(options.max_queue, options.max_batch, options.batch_wait, self.metrics, self._fits)

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

    app = FastAPI(title="plmlab", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.plmlab = state
    _errors(app)
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


async def read_json(request, limit: int) -> dict:
    """The body as a JSON object; over `limit` bytes (declared or sent) is 413, before parsing."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(f"the request body is over the server's limit of {limit} bytes", status=413,
                       code="body_too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(f"the request body is over the server's limit of {limit} bytes", status=413,
                           code="body_too_large")
        chunks.append(chunk)
    return parse_body(b"".join(chunks))


async def checked(request, state, schema: dict) -> dict:
    params = validate(await read_json(request, state.options.max_body), schema)
    state.served.check_name(params.get("model"))
    return params


def sampling(params: dict) -> dict:
    """plmlab.generate's sampling options from OpenAI's (temperature 0: greedy; top_p 1 and
    top_k -1 / 0: off)."""
    t = params["temperature"]
    return {"do_sample": t > 0, "temperature": t if t > 0 else 1.0,
            "top_p": params["top_p"] if params["top_p"] < 1 else None,
            "top_k": params["top_k"] if params["top_k"] > 0 else None, "seed": params["seed"]}


def generation_job(state, prompts, max_tokens: int, params: dict, logprobs):
    req = GenerationRequest(prompts, max_tokens, params.get("n", 1), params.get("stop", []), sampling(params), logprobs,
                            params.get("stream", False))
    from .flow import submit

    served = state.served
    run = lambda jobs: run_generation(served.model, served.tokenizer, jobs, served.eos, served.pad)  # noqa: E731
    job, events = submit(state, run, req, req.rows, req.batch_key())
    state.metrics.prompt_tokens.inc(sum(len(p) for p in prompts) * req.n)
    return req, job, events


def usage(request) -> dict:
    """This request's token counts ("prompt_tokens", "completion_tokens"), for its access-log line
    (MetricsMiddleware reads them once the answer is done: a stream's come at its end)."""
    return request.scope.setdefault("state", {}).setdefault("usage", {})


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
