"""What the routes do with a request before and after the worker: read its body, parse and
validate it off the event loop (Prep), turn OpenAI's sampling options into plmlab's, submit a
generation job, count its tokens. Below app.py and routes.py (and free of FastAPI), so both import it."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from .batch import GenerationRequest, run_generation
from .flow import ClientGone, submit
from .validation import ApiError, parse_body, validate


class Prep:
    """A request's CPU work -- JSON parsing, validation, tokenisation, chat templates -- on a few
    threads, so that the event loop keeps answering (/health, streams) while ~1 MB bodies are
    checked. At most `threads + queue` requests are in it (running or waiting); past that, 429.
    Counted on the event loop only; a slot is freed when its work ends, not when its client leaves."""

    def __init__(self, threads: int, queue: int, retry_after: int) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="plmlab-serve-prep")
        self.slots, self.taken, self.retry_after = threads + queue, 0, retry_after

    async def run(self, fn):
        if self.taken >= self.slots:
            raise ApiError(f"the server is checking {self.taken} requests already; retry later", status=429,
                           type="rate_limit_error", code="rate_limit_exceeded",
                           headers={"Retry-After": str(self.retry_after)})
        loop = asyncio.get_running_loop()
        self.taken += 1
        future = self.pool.submit(fn)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        return await asyncio.wrap_future(future)

    def _release(self) -> None:
        self.taken -= 1


async def read_body(request, limit: int) -> bytes:
    """The body's bytes; over `limit` bytes (declared or sent) is 413, before parsing."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise ApiError(f"the request body is over the server's limit of {limit} bytes", status=413,
                       code="body_too_large")
    from starlette.requests import ClientDisconnect

    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(f"the request body is over the server's limit of {limit} bytes", status=413,
                               code="body_too_large")
            chunks.append(chunk)
    except ClientDisconnect:  # gone mid-upload (or timed out: protocol.py)
        raise ClientGone() from None
    return b"".join(chunks)


def checked(raw: bytes, state, schema: dict) -> dict:
    """The body parsed and validated against `schema` (on a Prep thread: it may be a megabyte)."""
    params = validate(parse_body(raw), schema)
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
    served = state.served
    run = lambda jobs: run_generation(served.model, served.tokenizer, jobs, served.eos, served.pad)  # noqa: E731
    job, events = submit(state, run, req, req.rows, req.batch_key())
    state.metrics.prompt_tokens.inc(sum(len(p) for p in prompts) * req.n)
    return req, job, events


def usage(request) -> dict:
    """This request's token counts ("prompt_tokens", "completion_tokens"), for its access-log line
    (MetricsMiddleware reads them once the answer is done: a stream's come at its end)."""
    return request.scope.setdefault("state", {}).setdefault("usage", {})
