"""The jobs of a model that answers as a blank (a 2-D-position GLM: families/glm.py): its reply to
/v1/chat/completions is the blank after the conversation, ``Part A [gMASK] | <sop> answer <eop>``,
and a completion the blank after the text, ``[CLS] text [gMASK] <eos> | <sop> ...``; never
batch.py's 1-D prefix decoding, which would answer something else. The answer is decoded by the
one GLM answer, `plmlab.infill.answer_blank` (as `plmlab chat` decodes it); this module only puts
it on the server's worker.

A blank is decoded alone (its Part A is the bidirectional prefix of its own KV cache), so these
jobs never share a batch (key None); a request's n choices are decoded one after another, from
one seeded generator, each streaming its text as ("delta", index, text) events.
"""

from __future__ import annotations

import torch

from ..infill import answer_blank, blank_logprobs
from .batch import GenerationRequest, RowResult, logprob_entries
from .flow import submit
from .handling import sampling


def blank_job(state, part_a: list[int], max_tokens: int, params: dict, logprobs: int | None,
              mask_at: int | None = None):
    """(request, job, events) of one request whose answer is the blank at Part A's `mask_at`
    (default: its last token, a chat's [gMASK]), as handling.generation_job returns them."""
    req = GenerationRequest([part_a], max_tokens, params["n"], params["stop"], sampling(params), logprobs,
                            params["stream"])
    served, mask_at = state.served, len(part_a) - 1 if mask_at is None else mask_at
    job, events = submit(state, lambda jobs: run_blanks(served.model, served.tokenizer, jobs[0], mask_at), req,
                         req.rows)
    state.metrics.prompt_tokens.inc(len(part_a) * req.n)
    return req, job, events


def run_blanks(model, tokenizer, job, mask_at: int) -> None:
    """Decode each choice of the job's request (on the worker thread); ("done", [RowResult, ...])."""
    req: GenerationRequest = job.payload
    part_a, s = req.prompts[0], req.sampling
    generator = torch.Generator().manual_seed(s["seed"]) if s["seed"] is not None else None
    results = []
    for index in range(req.n):
        write = (lambda i: lambda text: job.emit(("delta", i, text)))(index) if req.stream else None
        answer = answer_blank(model, tokenizer, part_a, mask_at, max_new_tokens=req.max_tokens, stop=req.stop,
                              do_sample=s["do_sample"], temperature=s["temperature"], top_k=s["top_k"],
                              top_p=s["top_p"], generator=generator, write=write, live=lambda: job.live)
        tokens = answer.ids + ([answer.end_id] if answer.end_id is not None else [])  # <eop> counted, as EOS is
        lp = None
        if req.logprobs is not None:  # the blank's tokens (and the best at each place), teacher-forced
            lp = logprob_entries(tokenizer, blank_logprobs(model, tokenizer, part_a, mask_at, tokens), tokens,
                                 req.logprobs) if tokens else []
        results.append(RowResult(answer.text, tokens, answer.finish_reason, lp))
        if not job.live:
            return
    job.emit(("done", results))
