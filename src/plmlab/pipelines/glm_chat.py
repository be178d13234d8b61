"""How a 2-D-position GLM (the original GLM, ChatGLM-6B) answers: as the blank after its prompt.

SFT trains these models in ChatGLM-6B's layout ``prompt [gMASK] | <sop> answer <eop>``
(finetune/sft_glm.py), so every place that asks one for an answer decodes that blank here:
`plmlab chat` (pipelines/chat.py), serve's /v1/chat/completions (serve/glm_chat.py) and
`plmlab evaluate --task generate` (evaluate/generate.py). None of them may use the 1-D prefix
layout `plmlab.generate` feeds a GLM (the prompt as Part A with no [gMASK] / <sop>): a model
trained on blanks answers something else there.

The tokens come from infill.blank_tokens, the loop GLM blank filling decodes with (Part A once
into the KV cache, then one token at 2-D position (m, step + 1)), a generator, so that an answer
streams token by token and stops early -- at a stop string, or when a server's client has gone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ..errors import PlmlabError
from ..generation import TextStreamer, find_stop
from ..generation.filters import apply_pipeline, build_pipeline
from ..infill import blank_tokens
from ..objectives.glm_layout import TWO_D_POSITIONS, GlmTokens, blank_prompt


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


def text_prompt(tokenizer, text: str) -> tuple[list[int], int]:
    """Part A of a text (a chat rendering or a plain context): its ids, then the blank."""
    return blank_prompt(tokenizer, tokenizer.encode(text, add_special_tokens=False))


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
