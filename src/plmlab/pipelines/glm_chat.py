"""How a 2-D-position GLM (the original GLM, ChatGLM-6B) answers: as the blank after its prompt.

SFT trains these models in ChatGLM-6B's layout ``prompt [gMASK] | <sop> answer <eop>``
(finetune/sft_glm.py), so every place that asks one for an answer decodes that blank here:
`plmlab chat` (pipelines/chat.py), serve's /v1/chat/completions (serve/glm_chat.py) and
`plmlab evaluate --task generate` (evaluate/generate.py). None of them may use the 1-D prefix
layout `plmlab.generate` feeds a GLM (the prompt as Part A with no [gMASK] / <sop>): a model
trained on blanks answers something else there.

`blank_tokens` is infill.decode_span's loop (Part A once into the KV cache, then one token at
2-D position (m, step + 1); or the whole layout again each step, the reference path) written as
a generator, so that an answer streams token by token and stops early -- at a stop string, or
when a server's client has gone away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import torch

from ..errors import PlmlabError
from ..generation import TextStreamer, find_stop
from ..generation.filters import apply_pipeline, build_pipeline
from ..infill import blank_inputs
from ..objectives.glm_layout import TWO_D_POSITIONS, GlmTokens, glm_positions


# generate's options that `answer_blank` takes as they are (pipelines' decode_options names them so)
BLANK_OPTIONS = ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "min_p", "repetition_penalty",
                 "no_repeat_ngram_size")


@dataclass
class BlankAnswer:
    text: str  # the answer, cut at the first stop string
    ids: list[int]  # its ids: no <sop>, no closing <eop>
    finish_reason: str  # "stop" (<eop> / <eos> or a stop string), "length" (max_new_tokens) or "cancelled"
    end_id: int | None = None  # the token that closed the blank (<eop> / <eos>), when one did


def answers_as_blank(model) -> bool:
    """Does this model answer as a GLM blank (2-D positions) rather than by continuing the prompt?"""
    return model.config.position in TWO_D_POSITIONS


def blank_prompt(tokenizer, ids: list[int]) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) for the answer after ``ids``: the leading layout tokens
    (a template's ``[gMASK]<sop>`` prefix, GLM-4's 1-D convention) left out, then [gMASK] -- as
    objectives/glm_layout.py's `glm_prompt` builds a conversation's Part A."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    start = 0
    while start < len(ids) and ids[start] in (tok.gmask, tok.sop):
        start += 1
    part_a = list(ids[start:]) + [tok.gmask]
    return part_a, len(part_a) - 1


def text_prompt(tokenizer, text: str) -> tuple[list[int], int]:
    """Part A of a text (a chat rendering or a plain context): its ids, then the blank."""
    return blank_prompt(tokenizer, tokenizer.encode(text, add_special_tokens=False))


@torch.no_grad()
def blank_tokens(model, part_a: list[int], m: int, tok: GlmTokens, max_new: int, use_cache: bool,
                 filters, do_sample: bool, generator) -> Iterator[int]:
    """Each chosen token of the blank at Part A index m, the closing <eop> / <eos> last (when it
    comes within ``max_new``); the same tokens as infill.decode_span."""
    device = next(model.parameters()).device
    n_a = len(part_a)

    def batch(part_b: list[int]) -> dict[str, torch.Tensor]:  # one row of GLM's layout on the device
        return {k: torch.from_numpy(v)[None].to(device) for k, v in blank_inputs(part_a, m, part_b).items()}

    cache = model.new_cache(1, n_a + max_new) if use_cache else None
    if cache is not None:  # Part A once, bidirectional (the layout with no Part B yet)
        model(**batch([]), cache=cache)
    span: list[int] = []
    token = tok.sop
    banned = [*tok.masks, tok.sop, tok.cls]  # a span never holds a mask, [sop] or [CLS]
    for step in range(max_new):
        if cache is not None:  # one token at (m, step + 1); it sees every cached key
            pos = torch.from_numpy(glm_positions(n_a, [(m, step + 1)])[:, -1:])[None].to(device)  # (1, 2, 1)
            logits = model(torch.tensor([[token]], device=device), position_ids=pos, cache=cache).logits[0, -1]  # (V,)
        else:  # the whole sequence again under the full GLM mask: the reference path
            logits = model(**batch([tok.sop] + span)).logits[0, -1]  # (V,)
        history = torch.tensor([part_a + [tok.sop] + span], device=device)  # (1, L)
        logits = logits.float().clone()
        logits[banned] = float("-inf")
        scores = apply_pipeline(filters, logits[None], history)  # (1, V)
        token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator)) if do_sample \
            else int(scores.argmax(-1))
        yield token
        if token in (tok.eop, tok.eos):
            return
        span.append(token)


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
