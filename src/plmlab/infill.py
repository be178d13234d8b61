"""GLM's blank decoding: fill-blanks, and the answer of a 2-D GLM (the one GLM chat).

As the GLM repositories do (GLM-130B generate.py), blanks are filled left to right, one at a
time: Part A is `[CLS] text <eos>`; the first blank at Part A index m is generated as Part B,
`[sop]` at 2-D position (m, 1) and each next token at (m, 2), (m, 3), ... until `[eop]`. The
span then replaces its mask in Part A, so later blanks see it (bidirectionally).

With the KV cache, Part A is run once with a bidirectional mask and each Part B token attends
to every cached key (all of Part A and the span so far: exactly GLM's mask for that row).
Without it, the whole sequence runs again each step under the full GLM mask: the reference
that the cached path must reproduce token for token.

A 2-D GLM answers a prompt as the blank after it (families/glm.py: SFT trains ChatGLM-6B's
``prompt [gMASK] | <sop> answer <eop>``), so every place that asks one for an answer calls
`answer_blank` here: `plmlab chat` and the text-generation pipeline (pipelines/), serve's
/v1/chat/completions and /v1/completions (serve/blank_jobs.py, with `blank_logprobs`) and
`plmlab evaluate --task generate`. None of them may use the 1-D prefix layout `plmlab.generate`
feeds a GLM (the prompt as Part A with no [gMASK] / <sop>): a model trained on blanks answers
something else there. `blank_tokens` is a generator, so an answer streams token by token and
stops early -- at a stop string, or when a server's client has gone.

The layout itself (positions, masks, Part A of a prompt) is families/glm.py's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch

from .errors import PlmlabError
from .families import family_of
from .families.glm import GlmTokens, batch_of_one, blank_inputs, glm_positions, prepare
from .generation import TextStreamer, find_stop
from .generation.filters import apply_pipeline, build_pipeline

__all__ = ["BLANK_OPTIONS", "BlankAnswer", "Filled", "answer_blank", "blank_logprobs", "blank_tokens", "decode_span",
           "fill_blanks"]

# generate's options that `answer_blank` takes as they are (pipelines' decode_options names them so)
BLANK_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                 "no_repeat_ngram_size")


@dataclass
class Filled:
    ids: list[int]  # the text's ids with every blank filled
    blanks: list[list[int]] = field(default_factory=list)  # each blank's generated ids, left to right
    text: str = ""
    blank_texts: list[str] = field(default_factory=list)


def fill_blanks(model, tokenizer, text: str, max_new_tokens: int = 32, use_cache: bool = True,
                do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | None = None) -> Filled:
    """Fill every blank of `text` (see the module docstring); greedy unless `do_sample`."""
    config = model.config
    if not family_of(config).answers_as_blank or getattr(model, "head", None) is None:
        raise PlmlabError("fill-blanks needs a GLM blank-infilling model: a decoder with an LM head and 2-D "
                          f"positions (learned-2d or rotary-2d); this one has {config.position} positions")
    tok = GlmTokens.from_tokenizer(tokenizer)
    if max_new_tokens < 1:
        raise PlmlabError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    pipeline = build_pipeline(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    part_a = [tok.cls] + prepare(tokenizer, text) + [tok.eos]
    result = Filled(ids=[])
    while (m := next((i for i, t in enumerate(part_a) if t in tok.masks), None)) is not None:
        if len(part_a) + max_new_tokens + 1 > config.max_positions:
            raise PlmlabError(f"text of {len(part_a)} tokens plus {max_new_tokens} new ones exceeds the model's "
                              f"{config.max_positions} positions (shorten it or lower --max-new-tokens)")
        span = decode_span(model, part_a, m, tok, max_new_tokens, use_cache, pipeline, do_sample, generator)
        result.blanks.append(span)
        part_a = part_a[:m] + span + part_a[m + 1:]
    result.ids = part_a[1:-1]
    result.text = tokenizer.decode(result.ids)
    result.blank_texts = [tokenizer.decode(b) for b in result.blanks]
    return result


def decode_span(model, part_a: list[int], m: int, tok: GlmTokens, max_new: int, use_cache: bool,
                pipeline, do_sample: bool, generator) -> list[int]:
    """Generate the span of the mask at Part A index m (without its [sop] / [eop])."""
    return [t for t in blank_tokens(model, part_a, m, tok, max_new, use_cache, pipeline, do_sample, generator)
            if t not in (tok.eop, tok.eos)]


@torch.no_grad()
def blank_tokens(model, part_a: list[int], m: int, tok: GlmTokens, max_new: int, use_cache: bool,
                 pipeline, do_sample: bool, generator) -> Iterator[int]:
    """Each chosen token of the blank at Part A index m, the closing [eop] / <eos> last (when it
    comes within ``max_new``). A generator, so that a chat answer streams token by token and a
    caller can stop early (a stop string, a server's client gone away)."""
    device = next(model.parameters()).device
    n_a = len(part_a)
    cache = model.new_cache(1, n_a + max_new) if use_cache else None
    if cache is not None:  # Part A once, bidirectional (the layout with no Part B yet)
        model(**batch_of_one(blank_inputs(part_a, m, []), device), cache=cache)
    span: list[int] = []
    token = tok.sop
    banned = [*tok.masks, tok.sop, tok.cls]  # a span never holds a mask, [sop] or [CLS]
    for step in range(max_new):
        if cache is not None:  # one token at (m, step + 1): the block's last column; it sees every cached key
            pos = torch.from_numpy(glm_positions(n_a, [(m, step + 1)])[:, -1:])[None].to(device)  # (1, 2, 1)
            logits = model(torch.tensor([[token]], device=device), position_ids=pos, cache=cache).logits[0, -1]  # (V,)
        else:  # the whole sequence again under the full GLM mask: the reference path
            logits = model(**batch_of_one(blank_inputs(part_a, m, [tok.sop] + span), device)).logits[0, -1]  # (V,)
        history = torch.tensor([part_a + [tok.sop] + span], device=device)  # (1, L)
        logits = logits.float().clone()
        logits[banned] = float("-inf")
        scores = apply_pipeline(pipeline, logits[None], history)  # (1, V)
        token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator)) if do_sample \
            else int(scores.argmax(-1))
        yield token
        if token in (tok.eop, tok.eos):
            return
        span.append(token)


@dataclass
class BlankAnswer:
    text: str  # the answer, cut at the first stop string
    ids: list[int]  # its ids: no <sop>, no closing <eop>
    finish_reason: str  # "stop" (<eop> / <eos> or a stop string), "length" (max_new_tokens) or "cancelled"
    end_id: int | None = None  # the token that closed the blank (<eop> / <eos>), when one did


def answer_blank(model, tokenizer, part_a: list[int], mask_at: int, *, max_new_tokens: int,
                 stop: Iterable[str] = (), do_sample: bool = False, temperature: float | None = 1.0,
                 top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                 repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0, generator=None,
                 use_cache: bool = True, write: Callable[[str], object] | None = None,
                 live: Callable[[], bool] | None = None) -> BlankAnswer:
    """The blank after Part A, decoded with generate's filters; its text streams to ``write`` as it
    appears (a stop string never reaches it) and decoding ends once ``live()`` turns False."""
    limit, needed = model.config.max_positions, len(part_a) + 1 + max_new_tokens  # Part A, <sop>, the answer
    if needed > limit:
        raise PlmlabError(f"the prompt needs {needed} positions with max_new_tokens={max_new_tokens} (Part A "
                          f"{len(part_a)}, <sop>, the answer), more than the model's context of {limit}")
    if part_a and max(part_a) >= model.config.vocab_size:
        raise PlmlabError(f"the prompt has token id {max(part_a)} but the model has only "
                          f"{model.config.vocab_size} embeddings: the tokenizer does not belong to this model")
    tok = GlmTokens.from_tokenizer(tokenizer)
    stops = [s for s in stop if s]
    filters = build_pipeline(do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                             repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    streamer = TextStreamer(tokenizer, write or _ignore, stop=stops)
    reason, end = "length", None
    for token in blank_tokens(model, part_a, mask_at, tok, max_new_tokens, use_cache, filters, do_sample, generator):
        if token in (tok.eop, tok.eos):
            reason, end = "stop", token
            break
        streamer.put(torch.tensor([token]))
        if streamer.done:  # a stop string: nothing after it is wanted
            reason = "stop"
            break
        if live is not None and not live():
            reason = "cancelled"
            break
    streamer.end()
    text = tokenizer.decode(streamer.ids)
    at = find_stop(text, stops)
    return BlankAnswer(text[:at] if at >= 0 else text, streamer.ids, reason, end)


def _ignore(text: str) -> None:
    pass


@torch.no_grad()
def blank_logprobs(model, tokenizer, part_a: list[int], mask_at: int, tokens: list[int]) -> torch.Tensor:
    """(G, V) float32 log-probabilities at each of the blank's G tokens (`tokens`, its closing
    <eop> included): one teacher-forced pass over ``Part A <sop> tokens[:-1]``, the layout decoding fed."""
    device = next(model.parameters()).device
    row = blank_inputs(part_a, mask_at, [GlmTokens.from_tokenizer(tokenizer).sop] + tokens[:-1])
    logits = model(**batch_of_one(row, device)).logits[0]  # (A + G, V)
    return logits[len(part_a):].float().log_softmax(-1)  # (G, V): <sop> predicts tokens[0], and so on
