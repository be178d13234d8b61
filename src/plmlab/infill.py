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

import numpy as np
import torch

from .errors import PlmlabError
from .masks import positions_from_padding
from .generation.filters import apply_pipeline, build_pipeline
from .objectives.glm_layout import GlmTokens, glm_attention_mask

TWO_D_POSITIONS = ("learned-2d", "rotary-2d")


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


@torch.no_grad()
def decode_span(model, part_a: list[int], m: int, tok: GlmTokens, max_new: int, use_cache: bool,
                pipeline, do_sample: bool, generator) -> list[int]:
    """Generate the span of the mask at Part A index m (without its [sop] / [eop])."""
    device = next(model.parameters()).device
    n_a = len(part_a)
    a_ids = torch.tensor([part_a], device=device)  # (1, A)
    cache = model.new_cache(1, n_a + max_new) if use_cache else None
    if cache is not None:  # Part A once, bidirectional: a (1, A, A) all-ones mask
        a_pos = torch.stack((torch.arange(n_a), torch.zeros(n_a, dtype=torch.long)))[None].to(device)  # (1, 2, A)
        model(a_ids, position_ids=a_pos, attention_mask=torch.ones(1, n_a, n_a, device=device), cache=cache)
    span: list[int] = []
    token = tok.sop
    banned = {*tok.masks, tok.sop, tok.cls}
    for step in range(max_new):
        if cache is not None:  # one token at (m, step + 1); it sees every cached key
            pos = torch.tensor([[[m], [step + 1]]], device=device)  # (1, 2, 1)
            logits = model(torch.tensor([[token]], device=device), position_ids=pos, cache=cache).logits[0, -1]
        else:
            logits = _uncached_logits(model, part_a, m, [tok.sop] + span, device)
        history = torch.tensor([part_a + [tok.sop] + span], device=device)
        logits = logits.float().clone()
        logits[list(banned)] = float("-inf")  # a span never holds a mask, [sop] or [CLS]
        scores = apply_pipeline(pipeline, logits[None], history)  # (1, V)
        token = int(torch.multinomial(scores.softmax(-1), 1, generator=generator)) if do_sample \
            else int(scores.argmax(-1))
        if token in (tok.eop, tok.eos):
            break
        span.append(token)
    return span


def _uncached_logits(model, part_a: list[int], m: int, part_b: list[int], device) -> torch.Tensor:
    """The last token's logits from the full sequence under GLM's mask (the reference path)."""
    n_a, n_b = len(part_a), len(part_b)
    ids = torch.tensor([part_a + part_b], device=device)
    pos = np.stack([np.concatenate([np.arange(n_a), np.full(n_b, m)]),
                    np.concatenate([np.zeros(n_a, np.int64), np.arange(1, n_b + 1)])])
    mask = torch.from_numpy(glm_attention_mask(n_a, n_a + n_b).astype(np.int64))[None].to(device)
    return model(ids, position_ids=torch.from_numpy(pos)[None].to(device), attention_mask=mask).logits[0, -1]


class GlmPrefixInputs:
    """How `plmlab.generate` feeds a GLM model (the runners' input-preparer hook): the prompt
    is Part A (bidirectional) and the continuation one blank at its end, each new token at
    position (prompt length, k) with block positions k = 1, 2, ... as if a [gMASK] followed
    the prompt. `generate` has no tokenizer, so it cannot add GLM's [gMASK] / [sop] tokens
    itself: `fill_blanks` does, and is the better way to continue a text with a GLM model.

    The first `prefill` fixes the prompt length; the runner's uncached path calls `prefill`
    again on the grown sequence, which then lays out Part A + Part B the same way.
    """

    def __init__(self, config) -> None:
        self.prompt_len: int | None = None

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, padded: bool) -> dict:
        B, T = input_ids.shape
        if self.prompt_len is None:
            self.prompt_len = T
        n_a, real = self.prompt_len, mask.bool()  # (B, T) 1 = a token, 0 = left padding
        pos_a = positions_from_padding(real[:, :n_a])  # (B, A) counts real tokens only
        end = real[:, :n_a].sum(-1, keepdim=True)  # (B, 1) the blank's position: right after the prompt
        k = torch.arange(1, T - n_a + 1, device=mask.device).expand(B, T - n_a)  # (B, T - A)
        pos = torch.stack((torch.cat((pos_a, end.expand_as(k)), -1),
                           torch.cat((torch.zeros_like(pos_a), k), -1)), dim=1)  # (B, 2, T)
        query, key = torch.arange(T, device=mask.device)[:, None], torch.arange(T, device=mask.device)[None]
        allowed = (key < n_a) | ((query >= n_a) & (key <= query))  # (T, T) GLM: A bidirectional, B causal
        return {"position_ids": pos, "attention_mask": (allowed[None] & real[:, None, :]).long()}  # (B, T, T)

    def step(self, mask: torch.Tensor, padded: bool, n_new: int) -> dict:
        """The last `n_new` tokens of a (B, past + n_new) mask: they see every real key."""
        B, T = mask.shape
        real = mask.bool()
        end = real[:, : self.prompt_len].sum(-1, keepdim=True).expand(B, n_new)  # (B, n_new)
        k = torch.arange(T - n_new, T, device=mask.device) - self.prompt_len + 1  # block positions
        pos = torch.stack((end, k.expand(B, n_new)), dim=1)  # (B, 2, n_new)
        query = torch.arange(T - n_new, T, device=mask.device)[:, None]
        allowed = torch.arange(T, device=mask.device)[None] <= query  # (n_new, T)
        return {"position_ids": pos, "attention_mask": (allowed[None] & real[:, None, :]).long()}  # (B, n, T)
