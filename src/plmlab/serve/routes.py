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
from .handling import checked, generation_job, read_body, sampling, usage
from .responses import Formatter
from .validation import CHAT, CLASSIFY, COMPLETIONS, FILL_BLANKS, FILL_MASK, TEXT2TEXT, ApiError

STATIC = Path(__file__).parent / "static"


def register(app, state) -> None:
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

    async def answer(request, fmt, req, job, events, params, prompt_tokens):
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

    async def prepared(request, schema: dict, prepare):
        """`prepare(params)` of the checked body, both on a Prep thread (off the event loop)."""
        raw = await read_body(request, state.options.max_body)
        return await state.prep.run(lambda: prepare(checked(raw, state, schema)))

    def prepare_completion(params):
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

    @app.post("/v1/completions")
    async def completions(request: Request):
        params, echo, prompts, mask_at = await prepared(request, COMPLETIONS, prepare_completion)
        if mask_at is not None:
            req, job, events = blank_job(state, prompts[0], params["max_tokens"], params, params["logprobs"], mask_at)
        else:
            req, job, events = generation_job(state, prompts, params["max_tokens"], params, params["logprobs"])
        fmt = Formatter("completions", served.name, echo)
        return await answer(request, fmt, req, job, events, params, sum(map(len, prompts)))

    def prepare_chat(params):
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

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        params, ids, max_tokens = await prepared(request, CHAT, prepare_chat)
        logprobs = (params["top_logprobs"] or 0) if params["logprobs"] else None
        if served.blank_chat:  # the answer is the blank after the conversation (serve/blank_jobs.py)
            req, job, events = blank_job(state, ids, max_tokens, params, logprobs)
        else:
            req, job, events = generation_job(state, [ids], max_tokens, params, logprobs)
        return await answer(request, Formatter("chat", served.name), req, job, events, params, len(ids))

    def prepare_text2text(params):
        served.require("text2text")
        rows = [served.prompt_ids(t) for t in params["input"]]
        served.check_context(rows, params["max_tokens"], param="input")
        return params, rows

    @app.post("/v1/text2text")
    async def text2text(request: Request):
        params, rows = await prepared(request, TEXT2TEXT, prepare_text2text)
        req, job, events = generation_job(state, rows, params["max_tokens"], params, None)
        out, results = [], await result(state, job, events, request)
        usage(request).update(prompt_tokens=sum(map(len, rows)), completion_tokens=sum(len(r.tokens) for r in results))
        for row, r in zip(rows, results):
            item = {"text": r.text, "finish_reason": r.finish_reason, "tokens": len(r.tokens)}
            if sentinels_in(row, served.tokenizer):  # span filling: which fill belongs to which sentinel
                item.update(span_result(row, r.tokens, served.tokenizer))
            out.append(item)
        return {"object": "list", "model": served.name, "data": out}

    def task_params(task: str):
        """The `prepare` of an endpoint whose whole work is on the worker (fill-mask, classify)."""
        def prepare(params):
            served.require(task)
            return params
        return prepare

    async def call(request, params, make):
        """Run `make()` on the worker, one text per row (a batch holds `--max-batch` texts)."""
        job, events = submit(state, lambda jobs: jobs[0].emit(("done", jobs[0].payload())), make, len(params["input"]))
        return {"object": "list", "model": served.name, "data": await result(state, job, events, request)}

    @app.post("/v1/fill-mask")
    async def fill_mask(request: Request):
        params = await prepared(request, FILL_MASK, task_params("fill-mask"))
        pipe = lambda: FillMask(served.model, served.tokenizer, top_k=params["top_k"])(params["input"])  # noqa: E731
        return await call(request, params, pipe)

    def prepare_blanks(params):
        served.require("fill-blanks")
        rows = [served.blank_ids(t) for t in params["input"]]
        # Part A is [CLS] text <eos>; each blank's span has max_tokens and its [sop] (infill.fill_blanks)
        served.check_context([r + [0, 0, 0] for r in rows], params["max_tokens"], param="input")
        return params, rows

    @app.post("/v1/fill-blanks")
    async def fill_blanks(request: Request):
        params, rows = await prepared(request, FILL_BLANKS, prepare_blanks)
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
        params = await prepared(request, CLASSIFY, task_params("classify"))
        kind = TextClassification if served.config.classifier == "sequence" else TokenClassification
        return await call(request, params, lambda: kind(served.model, served.tokenizer)(params["input"]))
