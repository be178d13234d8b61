"""What the routes do with a request before and after the worker: read and validate its JSON
body, turn OpenAI's sampling options into plmlab's, submit a generation job, count its tokens.
Below app.py and routes.py (and free of FastAPI), so both import it."""

from __future__ import annotations

from .batch import GenerationRequest, run_generation
from .flow import submit
from .validation import ApiError, parse_body, validate


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
    served = state.served
    run = lambda jobs: run_generation(served.model, served.tokenizer, jobs, served.eos, served.pad)  # noqa: E731
    job, events = submit(state, run, req, req.rows, req.batch_key())
    state.metrics.prompt_tokens.inc(sum(len(p) for p in prompts) * req.n)
    return req, job, events


def usage(request) -> dict:
    """This request's token counts ("prompt_tokens", "completion_tokens"), for its access-log line
    (MetricsMiddleware reads them once the answer is done: a stream's come at its end)."""
    return request.scope.setdefault("state", {}).setdefault("usage", {})
