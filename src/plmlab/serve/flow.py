"""A request's way through the worker, seen from the event loop: submit a job (400 when it has
more rows than a batch, 429 when the queue is full), wait for its events under its deadline (504)
while watching that its client is still there, answer whole or as server-sent events. The
worker's events cross threads through `loop.call_soon_threadsafe`."""

from __future__ import annotations

import asyncio
import time
import traceback

from ..errors import PlmlabError
from .engine import Busy, Job
from .responses import sse
from .validation import ApiError

DISCONNECT_POLL = 0.2  # seconds between looks at whether a waiting whole-answer client has left


class ClientGone(ApiError):
    """The client hung up before its answer: nobody reads this (499, nginx's code, for the log)."""

    def __init__(self) -> None:
        super().__init__("the client closed the connection", status=499, code="client_closed_request")


def submit(state, run, payload, rows: int = 1, key=None) -> tuple[Job, asyncio.Queue]:
    """Queue a job of `rows` rows. A request never takes more rows than `--max-batch` (a batch
    holds): it is refused, as OpenAI refuses an `n` over its limit, rather than split."""
    if rows > state.options.max_batch:
        raise ApiError(f"this request needs {rows} rows (prompts x n); the server decodes at most "
                       f"{state.options.max_batch} together (--max-batch): send fewer prompts or choices",
                       param="n", code="too_many_rows")
    loop, events = asyncio.get_running_loop(), asyncio.Queue()

    def emit(event) -> None:
        try:
            loop.call_soon_threadsafe(events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    job = Job(run=run, emit=emit, deadline=time.monotonic() + state.options.timeout, payload=payload,
              rows=rows, key=key)
    try:
        state.engine.submit(job)
    except Busy as e:
        raise ApiError(f"{e}; retry later", status=429 if not state.engine.stopping else 503,
                       type="rate_limit_error", code="rate_limit_exceeded",
                       headers={"Retry-After": str(state.options.retry_after)}) from None
    return job, events


def _timeout(state) -> ApiError:
    return ApiError(f"the request did not finish within the server's deadline of {state.options.timeout:g} s",
                    status=504, type="timeout_error", code="timeout")


async def next_event(state, job: Job, events: asyncio.Queue, request=None) -> tuple:
    """The job's next (kind, data); past its deadline, or once `request`'s client has left, the
    job is cancelled (a waiting one never runs, a running one's rows stop: its slot is freed)."""
    while True:
        left = job.deadline - time.monotonic()
        try:
            event = await asyncio.wait_for(events.get(), max(min(left, DISCONNECT_POLL if request else left), 0.0))
            break
        except asyncio.TimeoutError:
            if time.monotonic() >= job.deadline:
                job.cancel()
                raise _timeout(state) from None
            if await request.is_disconnected():
                job.cancel()
                raise ClientGone() from None
    if event[0] == "cancelled":
        raise _timeout(state)
    if event[0] == "error":
        raise worker_error(event[1])
    return event


async def result(state, job: Job, events: asyncio.Queue, request):
    """The job's result (its "done" data), skipping streamed pieces; `request`'s client is watched
    (a stream's is watched by Starlette, which closes the stream when its client leaves)."""
    while True:
        kind, *data = await next_event(state, job, events, request)
        if kind == "done":
            return data[0]


def worker_error(e: Exception) -> Exception:
    """A PlmlabError the library raised is a client's mistake the validation did not catch (400);
    anything else is a bug of the server and stays a 500 with its traceback logged."""
    if isinstance(e, PlmlabError):
        return ApiError(str(e))
    traceback.print_exception(type(e), e, e.__traceback__)
    return e


async def stream(state, job: Job, events: asyncio.Queue, fmt, rows: int, prompt_tokens: int,
                 include_usage: bool, started: float, counts: dict):
    """Server-sent events in OpenAI's chunk format, then `data: [DONE]`. A client that goes away
    closes this generator (the next send fails), and `finally` cancels its job. The tokens made
    go into `counts` (the access log's, handling.usage)."""
    try:
        if fmt.kind == "chat":
            for i in range(rows):
                yield sse(fmt.chunk(i, first=True))
        elif fmt.echo:
            for i in range(rows):
                yield sse(fmt.chunk(i, fmt._prompt(i, rows // len(fmt.echo))))
        first = True
        while True:
            try:
                kind, *data = await next_event(state, job, events)
            except ApiError as e:  # the status line has gone: the error is the last event
                yield sse(e.body())
                return
            except Exception as e:
                yield sse(ApiError(f"internal error: {e}", status=500, type="server_error").body())
                return
            if kind == "delta":
                if first:
                    state.metrics.first_token.observe(time.monotonic() - started)
                    first = False
                yield sse(fmt.chunk(data[0], data[1]))
            elif kind == "done":
                for i, r in enumerate(data[0]):
                    yield sse(fmt.chunk(i, result=r))
                completion = counts["completion_tokens"] = sum(len(r.tokens) for r in data[0])
                state.metrics.completion_tokens.inc(completion)
                if include_usage:
                    yield sse(fmt.usage_chunk(prompt_tokens, completion))
                break
        yield sse("[DONE]")
    finally:
        job.cancel()
