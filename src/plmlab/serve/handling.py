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


# What a route does on a Prep thread with the checked params (routes.py `prepared`).

def prepare_completion(state, params):
    """(params, echo texts, prompt ids, a 2-D GLM's [gMASK] index or None) of a completions request."""
    served = state.served
    served.require("completions")
    echo = [p if isinstance(p, str) else served.tokenizer.decode(p) for p in params["prompt"]] \
        if params["echo"] else None
    if served.glm_tokens() is not None:  # a 2-D GLM: the blank after the text (serve/blank_jobs.py)
        part_a, mask_at = served.continuation_ids(params["prompt"])
        served.check_context([part_a + [0]], params["max_tokens"])  # + the blank's <sop>
        return params, echo, [part_a], mask_at
    prompts = [served.prompt_ids(p) for p in params["prompt"]]
    served.check_context(prompts, params["max_tokens"])
    return params, echo, prompts, None


def prepare_chat(state, params):
    """(params, prompt ids, max_tokens) of a chat request: the conversation rendered by its template."""
    served = state.served
    served.require("chat")
    if params["top_logprobs"] is not None and not params["logprobs"]:
        raise ApiError("'top_logprobs' needs 'logprobs': true", param="top_logprobs", code="invalid_value")
    ids = served.chat_ids(params["messages"])  # a 2-D GLM: Part A, its blank's <sop> takes one more position
    taken = len(ids) + served.blank_chat
    max_tokens = params["max_completion_tokens"] or params["max_tokens"]
    if max_tokens is None:  # as much as the context leaves, up to the server's default
        max_tokens = max(1, min(state.options.max_tokens, served.context - taken))
    served.check_context([ids + [0] * served.blank_chat], max_tokens, param="messages")
    return params, ids, max_tokens


def prepare_text2text(state, params):
    """(params, input ids) of a text2text request."""
    served = state.served
    served.require("text2text")
    rows = [served.prompt_ids(t) for t in params["input"]]
    served.check_context(rows, params["max_tokens"], param="input")
    return params, rows


def prepare_blanks(state, params):
    """(params, ids) of a fill-blanks request; each text needs a blank."""
    served = state.served
    served.require("fill-blanks")
    rows = [served.blank_ids(t) for t in params["input"]]
    # Part A is [CLS] text <eos>; each blank's span has max_tokens and its [sop] (infill.fill_blanks)
    served.check_context([r + [0, 0, 0] for r in rows], params["max_tokens"], param="input")
    return params, rows


def only_task(task: str):
    """The `prepare` of an endpoint whose whole work is on the worker (fill-mask, classify)."""
    def prepare(state, params):
        state.served.require(task)
        return params
    return prepare
