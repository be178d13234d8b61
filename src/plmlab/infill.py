"""GLM blank filling: generate each [MASK] / [sMASK] / [gMASK] of a text autoregressively.

As the GLM repositories do (GLM-130B generate.py), blanks are filled left to right, one at a
time: Part A is `[CLS] text <eos>`; the first blank at Part A index m is generated as Part B,
`[sop]` at 2-D position (m, 1) and each next token at (m, 2), (m, 3), ... until `[eop]`. The
span then replaces its mask in Part A, so later blanks see it (bidirectionally).

With the KV cache, Part A is run once with a bidirectional mask and each Part B token attends
to every cached key (all of Part A and the span so far: exactly GLM's mask for that row).
Without it, the whole sequence runs again each step under the full GLM mask: the reference
that the cached path must reproduce token for token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from .errors import PlmlabError
from .generation.filters import apply_pipeline, build_pipeline
from .objectives.glm_layout import TWO_D_POSITIONS, GlmTokens, glm_layout, glm_positions

__all__ = ["TWO_D_POSITIONS", "Filled", "batch_of_one", "blank_inputs", "blank_tokens", "continuation", "decode_span",
           "fill_blanks", "prepare"]


@dataclass
class Filled:
    ids: list[int]  # the text's ids with every blank filled
    blanks: list[list[int]] = field(default_factory=list)  # each blank's generated ids, left to right
    text: str = ""
    blank_texts: list[str] = field(default_factory=list)


def prepare(tokenizer, text: str) -> list[int]:
    """The text's ids with its mask tokens; [gMASK] appended when there is none (continue the text).

    A space before a mask becomes its own byte-level token ("Ġ") that pretraining never shows
    before a mask (a blanked span takes its leading space with it): it is dropped, and the
    generated span brings the space back.
    """
    tok = GlmTokens.from_tokenizer(tokenizer)
    ids = tokenizer.encode(text, add_special_tokens=False)
    if not any(t in tok.masks for t in ids):
        ids.append(tok.gmask)
    out: list[int] = []
    for t in ids:
        if t in tok.masks and out and tokenizer.decode([out[-1]], skip_special_tokens=False) == " ":
            out.pop()
        out.append(t)
    return out


def continuation(tokenizer, text: str) -> tuple[list[int], int]:
    """(Part A, the index of its [gMASK]) that continues `text`: fill-blanks' layout of `text [gMASK]`,
    `[CLS] text [gMASK] <eos>`, the blank at a text's end that GLM pretraining fills. A text with a
    blank of its own is fill-blanks' to fill."""
    tok = GlmTokens.from_tokenizer(tokenizer)
    ids = prepare(tokenizer, text)
    if [t for t in ids if t in tok.masks] != [tok.gmask] or ids[-1] != tok.gmask:
        raise PlmlabError("the prompt has a blank ([MASK], [sMASK] or [gMASK]) of its own: fill it with "
                          "`plmlab fill-blanks` (a prompt is continued as the blank after it)")
    part_a = [tok.cls] + ids + [tok.eos]
    return part_a, len(part_a) - 2


def fill_blanks(model, tokenizer, text: str, max_new_tokens: int = 32, use_cache: bool = True,
                do_sample: bool = False, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, seed: int | None = None) -> Filled:
    """Fill every blank of `text` (see the module docstring); greedy unless `do_sample`."""
    config = model.config
    if config.arch != "decoder" or config.position not in TWO_D_POSITIONS or getattr(model, "head", None) is None:
        raise PlmlabError("fill-blanks needs a GLM blank-infilling model: a decoder with an LM head and 2-D "
                          f"positions ({' or '.join(TWO_D_POSITIONS)}); this one has {config.position} positions")
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


def blank_inputs(part_a: list[int], m: int, part_b: list[int]) -> dict[str, np.ndarray]:
    """The model inputs of Part A plus the blank at Part A index m decoded so far (`part_b`:
    [sop] and the span's tokens), laid out by `glm_layout` exactly as the objective lays out a
    training example: input_ids (T,), position_ids (2, T), attention_mask (T, T)."""
    position_ids, mask = glm_layout(len(part_a), [(m, len(part_b))] if part_b else [])
    return {"input_ids": np.asarray(part_a + part_b, dtype=np.int64), "position_ids": position_ids,
            "attention_mask": mask.astype(np.int64)}


def batch_of_one(inputs: dict[str, np.ndarray], device) -> dict[str, torch.Tensor]:
    """A batch of one on `device`."""
    return {k: torch.from_numpy(v)[None].to(device) for k, v in inputs.items()}
