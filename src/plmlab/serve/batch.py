"""Running a batch of generation jobs as one `plmlab.generate` call: their rows (prompts x n)
left-padded into one prefill, then one decode step per token for all rows over one KV cache.

Each row has its own TextStreamer (its stop strings, partial UTF-8 held back) and its own
max_tokens; the batch runs to the longest max_tokens but a row that is finished -- EOS, a stop
string, its own max_tokens, its job cancelled -- takes no more tokens, and once every row is
finished the decode loop is left at once. Greedy rows get the tokens they get alone: padding is
masked and positions are counted over real tokens (plmlab.generation's left-padded layout).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..families import family_of
from ..generation import TextStreamer, generate
from ..generation.runners import make_inputs


@dataclass
class GenerationRequest:
    prompts: list[list[int]]  # token ids of each prompt
    max_tokens: int
    n: int = 1
    stop: list[str] = field(default_factory=list)
    sampling: dict = field(default_factory=dict)  # do_sample, temperature, top_k, top_p, seed
    logprobs: int | None = None  # None: no logprobs; k: the chosen token's and the top k
    stream: bool = False  # send each piece of text as it appears (else only the result)

    @property
    def rows(self) -> int:
        return len(self.prompts) * self.n

    def batch_key(self):
        """Jobs with equal keys share a batch: greedy ones all do; sampling ones with the same
        filters do, unless seeded (a seed promises the tokens the request gets alone)."""
        s = self.sampling
        if not s.get("do_sample"):
            return ("greedy",)
        if s.get("seed") is not None:
            return None
        return ("sample", s.get("temperature"), s.get("top_k"), s.get("top_p"))


@dataclass
class RowResult:
    text: str
    tokens: list[int]  # generated ids, up to the one that finished the row (EOS included)
    finish_reason: str  # "stop" (EOS or a stop string), "length" or "cancelled"
    logprobs: list[dict] | None = None  # per token: {"token", "logprob", "top": [(token, logprob)]}


def _ignore(text: str) -> None:
    pass


class _Row:
    def __init__(self, job, index: int, limit: int, streamer: TextStreamer) -> None:
        self.job, self.index, self.limit, self.streamer = job, index, limit, streamer
        self.tokens: list[int] = []
        self.reason: str | None = None


class _AllDone(Exception):
    """Raised from the streamer to leave the decode loop when no row takes more tokens."""


class BatchStreamer:
    """The streamer protocol of plmlab.generate (put(tokens (B,)), end()) over every row."""

    def __init__(self, rows: list[_Row]) -> None:
        self.rows = rows

    def put(self, tokens: torch.Tensor) -> None:  # tokens (B,)
        for row, token in zip(self.rows, tokens.reshape(-1).tolist()):
            if row.reason is not None:
                continue
            if not row.job.live:
                row.reason = "cancelled"
                continue
            row.tokens.append(token)
            row.streamer.put(torch.tensor([token]))
            if row.streamer.done:
                row.reason = "stop"
            elif len(row.tokens) >= row.limit:
                row.streamer.end()
                row.reason = "length"
        if all(r.reason is not None for r in self.rows):
            raise _AllDone

    def end(self) -> None:
        pass


def run_generation(model, tokenizer, jobs, eos: int | None, pad: int | None) -> None:
    """Decode every row of `jobs` (same batch_key) together; each job gets ("delta", choice
    index, text) events as text appears (if it streams) and then ("done", [RowResult per choice])."""
    rows, prompts = [], []
    for job in jobs:
        req: GenerationRequest = job.payload
        for p, ids in enumerate(req.prompts):
            for c in range(req.n):
                index = p * req.n + c
                # a whole answer needs no pieces: each would wake the event loop (and take the GIL)
                write = (lambda job, index: lambda text: job.emit(("delta", index, text)))(job, index) \
                    if req.stream else _ignore
                streamer = TextStreamer(tokenizer, write, stop=req.stop, end_ids=[] if eos is None else [eos])
                rows.append(_Row(job, index, req.max_tokens, streamer))
                prompts.append(ids)
    sampling = jobs[0].payload.sampling
    try:
        generate(model, prompts, max_new_tokens=max(j.payload.max_tokens for j in jobs), eos_token_id=eos,
                 pad_token_id=pad, streamer=BatchStreamer(rows), **sampling)
    except _AllDone:
        pass
    for row in rows:
        if row.reason is None:  # generate ran out of steps (or every other row ended at EOS)
            row.streamer.end()
            row.reason = "length"
    for job in jobs:
        mine = [(r, ids) for r, ids in zip(rows, prompts) if r.job is job]
        if not job.live:
            continue
        results = []
        for row, ids in mine:
            lp = token_logprobs(model, tokenizer, ids, row.tokens, job.payload.logprobs) \
                if job.payload.logprobs is not None and family_of(model.config).reports_logprobs else None
            results.append(RowResult(row.streamer.text, row.tokens, row.reason, lp))
        job.emit(("done", results))


@torch.no_grad()
def token_logprobs(model, tokenizer, prompt: list[int], generated: list[int], top: int) -> list[dict]:
    """The model's own log-probabilities (before temperature and filters, as OpenAI reports them)
    of each generated token, and of the `top` most likely tokens at its place: one teacher-forced
    pass over prompt + generated, fed as the decode loop feeds it (GLM: the prompt is Part A)."""
    if not generated:
        return []
    device = next(model.parameters()).device
    inputs = make_inputs(model.config)
    part_a = torch.tensor([prompt], device=device)  # (1, P)
    inputs.prefill(part_a, torch.ones_like(part_a), False)  # fixes GLM's prompt length
    ids = torch.tensor([prompt + generated], device=device)  # (1, P + G)
    logits = model(ids, **inputs.prefill(ids, torch.ones_like(ids), False)).logits[0]  # (P + G, V)
    logp = logits[len(prompt) - 1:-1].float().log_softmax(-1)  # (G, V): the row predicting each token
    return logprob_entries(tokenizer, logp, generated, top)


def logprob_entries(tokenizer, logp: torch.Tensor, generated: list[int], top: int) -> list[dict]:
    """Per generated token g: its log-probability under logp[g] (G, V) and the `top` best there."""
    values, alts = logp.topk(min(top, logp.shape[-1]), dim=-1) if top else (None, None)  # (G, top)
    out = []
    for g, token in enumerate(generated):
        entry = {"token": _piece(tokenizer, token), "logprob": _finite(logp[g, token]), "top": []}
        if top:
            entry["top"] = [(_piece(tokenizer, t), _finite(v)) for t, v in zip(alts[g].tolist(), values[g].tolist())]
        out.append(entry)
    return out


def _piece(tokenizer, token: int) -> str:
    """A token as text (its decoded bytes; a special token by its name)."""
    return tokenizer.decode([token]) or tokenizer.id_to_token(token) or ""


def _finite(value) -> float:
    """-inf (a probability that underflowed) is not JSON: clamp it, as OpenAI reports -9999."""
    return max(float(value), -9999.0)
