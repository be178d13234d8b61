"""The endpoints. Each: read the body, check it on a Prep thread (schema, model name, task,
tokens, context: `prepare`), submit, answer. Imported by create_app only, so FastAPI is needed
only once a server is made."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, StreamingResponse

from ..pipelines import FillBlanks, FillMask, TextClassification, TokenClassification, span_result
from ..pipelines.span_fills import sentinels_in
from .blank_jobs import blank_job
from .flow import result, stream, submit
from .handling import (checked, generation_job, only_task, prepare_blanks, prepare_chat, prepare_completion,
                       prepare_text2text, read_body, sampling, usage)
from .responses import Formatter
from .validation import CHAT, CLASSIFY, COMPLETIONS, FILL_BLANKS, FILL_MASK, TEXT2TEXT

STATIC = Path(__file__).parent / "static"


def register(app, state) -> None:
    _info_routes(app, state)
    _generation_routes(app, state)
    _pipeline_routes(app, state)


async def _prepared(state, request, schema: dict, prepare):
    """`prepare(state, params)` of the checked body, both on a Prep thread (off the event loop)."""
    raw = await read_body(request, state.options.max_body)
    return await state.prep.run(lambda: prepare(state, checked(raw, state, schema)))


async def _answer(state, request, fmt, req, job, events, params, prompt_tokens):
    """A generation's answer: streamed (server-sent events) or whole."""
    started = time.monotonic()
    counts = usage(request)
    counts["prompt_tokens"] = prompt_tokens
    if params["stream"]:
        include_usage = bool((params["stream_options"] or {}).get("include_usage"))
        return StreamingResponse(stream(state, job, events, fmt, req.rows, prompt_tokens, include_usage, started,
                                        counts),
                                 media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    rows = await result(state, job, events, request)
    counts["completion_tokens"] = sum(len(r.tokens) for r in rows)
    state.metrics.completion_tokens.inc(counts["completion_tokens"])
    return JSONResponse(fmt.whole(rows, req.n, prompt_tokens))


async def _call(state, request, params, make):
    """Run `make()` on the worker, one text per row (a batch holds `--max-batch` texts)."""
    job, events = submit(state, lambda jobs: jobs[0].emit(("done", jobs[0].payload())), make, len(params["input"]))
    return {"object": "list", "model": state.served.name, "data": await result(state, job, events, request)}


def _info_routes(app, state) -> None:
    served = state.served

    @app.get("/health")
    async def health():
        return {"status": "ok", "queue_depth": state.engine.depth(), "model": served.name}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [served.card()]}

    @app.get("/v1/models/{name}")
    async def model(name: str):
        served.check_name(name)
        return served.card()

    @app.get("/")
    async def playground():
        return FileResponse(STATIC / "index.html", media_type="text/html")


def _generation_routes(app, state) -> None:
    served = state.served

    @app.post("/v1/completions")
    async def completions(request: Request):
        params, echo, prompts, mask_at = await _prepared(state, request, COMPLETIONS, prepare_completion)
        if mask_at is not None:
            req, job, events = blank_job(state, prompts[0], params["max_tokens"], params, params["logprobs"], mask_at)
        else:
            req, job, events = generation_job(state, prompts, params["max_tokens"], params, params["logprobs"])
        fmt = Formatter("completions", served.name, echo)
        return await _answer(state, request, fmt, req, job, events, params, sum(map(len, prompts)))

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        params, ids, max_tokens = await _prepared(state, request, CHAT, prepare_chat)
        logprobs = (params["top_logprobs"] or 0) if params["logprobs"] else None
        if served.blank_chat:  # the answer is the blank after the conversation (serve/blank_jobs.py)
            req, job, events = blank_job(state, ids, max_tokens, params, logprobs)
        else:
            req, job, events = generation_job(state, [ids], max_tokens, params, logprobs)
        return await _answer(state, request, Formatter("chat", served.name), req, job, events, params, len(ids))

    @app.post("/v1/text2text")
    async def text2text(request: Request):
        params, rows = await _prepared(state, request, TEXT2TEXT, prepare_text2text)
        req, job, events = generation_job(state, rows, params["max_tokens"], params, None)
        out, results = [], await result(state, job, events, request)
        usage(request).update(prompt_tokens=sum(map(len, rows)), completion_tokens=sum(len(r.tokens) for r in results))
        for row, r in zip(rows, results):
            item = {"text": r.text, "finish_reason": r.finish_reason, "tokens": len(r.tokens)}
            if sentinels_in(row, served.tokenizer):  # span filling: which fill belongs to which sentinel
                item.update(span_result(row, r.tokens, served.tokenizer))
            out.append(item)
        return {"object": "list", "model": served.name, "data": out}


def _pipeline_routes(app, state) -> None:
    served = state.served

    @app.post("/v1/fill-mask")
    async def fill_mask(request: Request):
        params = await _prepared(state, request, FILL_MASK, only_task("fill-mask"))
        pipe = lambda: FillMask(served.model, served.tokenizer, top_k=params["top_k"])(params["input"])  # noqa: E731
        return await _call(state, request, params, pipe)

    @app.post("/v1/fill-blanks")
    async def fill_blanks(request: Request):
        params, rows = await _prepared(state, request, FILL_BLANKS, prepare_blanks)
        pipe = FillBlanks(served.model, served.tokenizer, max_new_tokens=params["max_tokens"], **sampling(params))
        job, events = submit(state, lambda jobs: jobs[0].emit(("done", pipe(jobs[0].payload))), params["input"],
                             len(rows))
        state.metrics.prompt_tokens.inc(sum(map(len, rows)))
        results = await result(state, job, events, request)
        counts = usage(request)
        counts.update(prompt_tokens=sum(map(len, rows)), completion_tokens=sum(len(b) for r in results
                                                                               for b in r["blank_ids"]))
        state.metrics.completion_tokens.inc(counts["completion_tokens"])
        data = [{"index": i, "text": r["text"], "blanks": r["blanks"],
                 "tokens": sum(len(b) for b in r["blank_ids"])} for i, r in enumerate(results)]
        return {"object": "list", "model": served.name, "data": data}

    @app.post("/v1/classify")
    async def classify(request: Request):
        params = await _prepared(state, request, CLASSIFY, only_task("classify"))
        kind = TextClassification if served.config.classifier == "sequence" else TokenClassification
        return await _call(state, request, params, lambda: kind(served.model, served.tokenizer)(params["input"]))
