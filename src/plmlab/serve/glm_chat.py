"""/v1/chat/completions and /v1/completions of a 2-D-position GLM (the original GLM, ChatGLM-6B):
the reply is the blank after the conversation, ``Part A [gMASK] | <sop> answer <eop>`` -- the
layout SFT trains and `plmlab chat` decodes (pipelines/glm_chat.py) -- and a completion the blank
after the text, ``[CLS] text [gMASK] <eos> | <sop> ...`` (infill.continuation, as `plmlab generate`
and fill-blanks lay it out); never batch.py's 1-D prefix decoding, which would answer something else.

A blank is decoded alone (its Part A is the bidirectional prefix of its own KV cache), so these
jobs never share a batch (key None); a request's n choices are decoded one after another, from
one seeded generator, each streaming its text as ("delta", index, text) events.
"""

from __future__ import annotations

import torch

from ..infill import batch_of_one, blank_inputs
from ..pipelines.glm_chat import answer_blank
from .batch import GenerationRequest, RowResult, logprob_entries
from .flow import submit
from .handling import sampling


def glm_chat_job(state, part_a: list[int], max_tokens: int, params: dict, logprobs: int | None,
                 mask_at: int | None = None):
    """(request, job, events) of one request whose answer is the blank at Part A's `mask_at`
    (default: its last token, a chat's [gMASK]), as handling.generation_job returns them."""
    req = GenerationRequest([part_a], max_tokens, params["n"], params["stop"], sampling(params), logprobs,
                            params["stream"])
    served, mask_at = state.served, len(part_a) - 1 if mask_at is None else mask_at
    job, events = submit(state, lambda jobs: run_glm_chat(served.model, served.tokenizer, jobs[0], mask_at), req,
                         req.rows)
    state.metrics.prompt_tokens.inc(len(part_a) * req.n)
    return req, job, events


def run_glm_chat(model, tokenizer, job, mask_at: int) -> None:
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
        lp = blank_logprobs(model, tokenizer, part_a, mask_at, tokens, req.logprobs) if req.logprobs is not None \
            else None
        results.append(RowResult(answer.text, tokens, answer.finish_reason, lp))
        if not job.live:
            return
    job.emit(("done", results))


@torch.no_grad()
def blank_logprobs(model, tokenizer, part_a: list[int], mask_at: int, tokens: list[int], top: int) -> list[dict]:
    """The model's log-probabilities of each token of the blank (and the `top` best at its place):
    one teacher-forced pass over ``Part A <sop> tokens[:-1]``, the layout decoding fed."""
    if not tokens:
        return []
    from ..objectives.glm_layout import GlmTokens

    device = next(model.parameters()).device
    row = blank_inputs(part_a, mask_at, [GlmTokens.from_tokenizer(tokenizer).sop] + tokens[:-1])
    logits = model(**batch_of_one(row, device)).logits[0]  # (A + G, V)
    logp = logits[len(part_a):].float().log_softmax(-1)  # (G, V): <sop> predicts tokens[0], and so on
    return logprob_entries(tokenizer, logp, tokens, top)
