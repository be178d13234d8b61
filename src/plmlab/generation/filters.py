"""Logit filters: small pure functions of the next-token scores, kept in one table.

Each filter maps scores (B, V) to scores (B, V); the ones that look at what came before also
take the token history (B, L) and a boolean `valid` (B, L) marking real tokens (False on left
padding). `build_pipeline` picks filters in the order `transformers` applies its logits
processors -- repetition penalty, no-repeat-n-gram, then (sampling only) temperature, top-k,
top-p, min-p -- so greedy and beam search give the same tokens as `generate` there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch

from ..errors import PlmlabError

NEG_INF = float("-inf")


def temperature(scores: torch.Tensor, value: float) -> torch.Tensor:
    """Divide the scores by `value` (< 1 sharpens, > 1 flattens the distribution)."""
    return scores / value


def top_k(scores: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep the k best tokens (ties with the k-th kept too, as in transformers)."""
    k = min(max(k, min_keep), scores.shape[-1])
    kth = torch.topk(scores, k).values[..., -1:]  # (B, 1)
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the smallest set of best tokens whose
    probability reaches p; the best token always survives."""
    sorted_scores, order = torch.sort(scores, descending=False)  # (B, V) worst first
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove = cumulative <= (1 - p)
    remove[..., -min_keep:] = False
    remove = remove.scatter(-1, order, remove)  # back to vocabulary order
    return scores.masked_fill(remove, NEG_INF)


def min_p(scores: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Drop tokens whose probability is below p times the best token's probability."""
    probs = scores.softmax(dim=-1)
    remove = probs < p * probs.amax(dim=-1, keepdim=True)
    best = torch.topk(probs, min(min_keep, probs.shape[-1]), dim=-1).indices
    remove.scatter_(-1, best, False)
    return scores.masked_fill(remove, NEG_INF)


def repetition_penalty(scores: torch.Tensor, tokens: torch.Tensor, penalty: float,
                       valid: torch.Tensor | None = None) -> torch.Tensor:
    """CTRL (Keskar et al. 2019): for every token already in `tokens`, divide a positive
    score by `penalty` and multiply a negative one, so penalty > 1 always makes it less likely."""
    V = scores.shape[-1]
    tokens = tokens.clamp(max=V)  # ids past the head's width cannot be generated anyway
    if valid is not None:
        tokens = tokens.masked_fill(~valid, V)  # padding goes to a spare column, dropped below
    present = torch.zeros(scores.shape[0], V + 1, dtype=torch.bool, device=scores.device)
    present.scatter_(1, tokens, True)
    penalised = torch.where(scores < 0, scores * penalty, scores / penalty)
    return torch.where(present[:, :V], penalised, scores)


def no_repeat_ngram(scores: torch.Tensor, tokens: torch.Tensor, n: int,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in `tokens`.

    The last n-1 tokens are the prefix; each earlier window of n tokens whose first n-1 equal
    it bans its last token. Windows that touch padding never match.
    """
    B, L = tokens.shape
    V = scores.shape[-1]
    if L < n:
        return scores
    prefix = tokens[:, L + 1 - n:]  # (B, n-1)
    windows = tokens.unfold(1, n, 1)  # (B, L-n+1, n)
    matches = (windows[..., :-1] == prefix[:, None]).all(dim=-1)  # (B, L-n+1)
    if valid is not None:
        matches &= valid.unfold(1, n, 1).all(dim=-1)
        matches &= (valid.sum(dim=1, keepdim=True) >= n)  # a row still shorter than n: nothing to ban
    banned = torch.zeros(B, V + 1, dtype=torch.bool, device=scores.device)
    banned.scatter_(1, torch.where(matches, windows[..., -1].clamp(max=V), V), True)
    return scores.masked_fill(banned[:, :V], NEG_INF)


@dataclass(frozen=True)
class Filter:
    fn: Callable[..., torch.Tensor]
    uses_history: bool  # takes (scores, tokens, ..., valid=)


# build_pipeline adds the last four ("warpers") only when sampling: they change which token is
# sampled, never the greedy choice.
FILTERS: dict[str, Filter] = {
    "repetition_penalty": Filter(repetition_penalty, True),
    "no_repeat_ngram": Filter(no_repeat_ngram, True),
    "temperature": Filter(temperature, False),
    "top_k": Filter(top_k, False),
    "top_p": Filter(top_p, False),
    "min_p": Filter(min_p, False),
}

Pipeline = list[tuple[str, Callable[..., torch.Tensor]]]


def build_pipeline(*, do_sample: bool = False, temperature: float | None = 1.0, top_k: int | None = None,
                   top_p: float | None = None, min_p: float | None = None, repetition_penalty: float = 1.0,
                   no_repeat_ngram_size: int = 0, min_keep: int = 1) -> Pipeline:
    """The active filters with their parameters bound, in transformers' order.

    `min_keep` is how many tokens the sampling filters always keep (beam sampling keeps
    one more than the number of EOS ids, as transformers does).
    """
    check_options(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                  repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size)
    chosen: list[tuple[str, dict]] = []
    if repetition_penalty != 1.0:
        chosen.append(("repetition_penalty", {"penalty": repetition_penalty}))
    if no_repeat_ngram_size:
        chosen.append(("no_repeat_ngram", {"n": no_repeat_ngram_size}))
    if do_sample:
        if temperature is not None and temperature != 1.0:
            chosen.append(("temperature", {"value": temperature}))
        if top_k:
            chosen.append(("top_k", {"k": top_k, "min_keep": min_keep}))
        if top_p is not None and top_p < 1.0:
            chosen.append(("top_p", {"p": top_p, "min_keep": min_keep}))
        if min_p is not None:
            chosen.append(("min_p", {"p": min_p, "min_keep": min_keep}))
    return [(name, partial(FILTERS[name].fn, **kw)) for name, kw in chosen]


def apply_pipeline(pipeline: Pipeline, scores: torch.Tensor, tokens: torch.Tensor,
                   valid: torch.Tensor | None = None) -> torch.Tensor:
    for name, fn in pipeline:
        scores = fn(scores, tokens, valid=valid) if FILTERS[name].uses_history else fn(scores)
    return scores


def check_options(*, temperature=1.0, top_k=None, top_p=None, min_p=None, repetition_penalty=1.0,
                  no_repeat_ngram_size=0) -> None:
    """One-line errors for values no filter can use (nan fails every comparison, so the float
    checks are written to let only good values through)."""
    if temperature is not None and not 0 <= temperature < math.inf:
        raise PlmlabError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and (not isinstance(top_k, int) or top_k < 0):
        raise PlmlabError(f"top_k must be a non-negative integer, got {top_k!r}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise PlmlabError(f"top_p must be in (0, 1], got {top_p}")
    if min_p is not None and not 0.0 <= min_p <= 1.0:
        raise PlmlabError(f"min_p must be in [0, 1], got {min_p}")
    if repetition_penalty is None or not 0 < repetition_penalty < math.inf:
        raise PlmlabError(f"repetition_penalty must be a finite number > 0, got {repetition_penalty}")
    if not isinstance(no_repeat_ngram_size, int) or no_repeat_ngram_size < 0:
        raise PlmlabError(f"no_repeat_ngram_size must be a non-negative integer, got {no_repeat_ngram_size!r}")
