"""Encoder scoring: pseudo-log-likelihood (Salazar et al. 2020, "Masked Language Model Scoring",
section 2.1). The whole text `[CLS] context continuation [SEP]` is read at once and each token
of the continuation is masked in turn; its score is the sum of log p(token | everything else):

    [CLS] the cat [MASK] on   [SEP]   -> log p("sat")
    [CLS] the cat  sat  [MASK][SEP]   -> log p("on")

Every masked copy of every pair is one row; rows are batched `batch_size` pairs at a time.
"""

from __future__ import annotations

import torch

from ..errors import PlmlabError
from .scoring_parts import Pair, special_wrap, token_score


@torch.no_grad()
def score_pll(model, tokenizer, pairs: list[Pair], batch_size: int) -> list[tuple[float, bool]]:
    if tokenizer.mask_id is None:
        raise PlmlabError("pseudo-log-likelihood needs a tokenizer with a mask token")
    prefix, suffix = special_wrap(tokenizer)
    room = model.config.max_positions - len(prefix) - len(suffix)
    results = []
    for start in range(0, len(pairs), batch_size):
        texts, spans = [], []
        for ctx, cont in pairs[start:start + batch_size]:
            if len(cont) > room:
                raise PlmlabError(f"a continuation of {len(cont)} tokens is longer than the model's {room} positions")
            ctx = ctx[len(ctx) + len(cont) - room:] if len(ctx) + len(cont) > room else ctx  # cut from the left
            first = len(prefix) + len(ctx)
            texts.append(prefix + ctx + cont + suffix)
            spans.append((first, first + len(cont)))
        results += score_masked(model, tokenizer, texts, spans)
    return results


def score_masked(model, tokenizer, texts: list[list[int]], spans: list[tuple[int, int]]) -> list[tuple[float, bool]]:
    """Per text, the PLL of its tokens in [start, end): one masked row per token."""
    device = next(model.parameters()).device
    rows = [(t, p) for t, (a, b) in enumerate(spans) for p in range(a, b)]
    T = max(len(t) for t in texts)
    pad = tokenizer.pad_id if tokenizer.pad_id is not None else 0
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for r, (t, p) in enumerate(rows):
        ids[r, :len(texts[t])], mask[r, :len(texts[t])] = torch.tensor(texts[t]), 1
        ids[r, p] = tokenizer.mask_id
    logits = model(ids.to(device), attention_mask=mask.to(device)).logits  # (R, T, V)
    at = torch.tensor([p for _, p in rows], device=device)
    logp = logits[torch.arange(len(rows), device=device), at].float().log_softmax(-1)  # (R, V): each masked slot
    scores, r = [], 0
    for text, (a, b) in zip(texts, spans):
        scores.append(token_score(logp[r:r + b - a], text[a:b]))
        r += b - a
    return scores
