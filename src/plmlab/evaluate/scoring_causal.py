"""Decoder scoring with one prefill per context: the context's KV cache is shared by its choices.

A chunk of contexts is run once, left-padded, into a KV cache; the cache rows are then copied
(index_select) once per continuation and every continuation (minus its last token, which is
never fed: lm-eval's `inp[:-1]`) runs on top of its context's row:

    prefill   [pad pad c1 c2 c3]            -> logits at c3 predict cont[0]
    expand    row g -> rows of g's continuations
    continue  [k1 k2 pad] on top of its row -> logits predict cont[1:]

Continuations run in buckets of similar length, so right padding wastes little; it needs no
mask: a causal query never sees later keys.
"""

from __future__ import annotations

import copy

import torch

from ..errors import PlmlabError
from ..masks import positions_from_padding
from .scoring_parts import Pair, chunk_groups, group_by_context, token_score


def fit_window(pairs: list[Pair], max_len: int) -> list[Pair]:
    """Cut contexts from the left so that context + continuation - 1 fits the model's positions
    (lm-eval: `(context + continuation)[-(max_length + 1):][:-1]`)."""
    out = []
    for ctx, cont in pairs:
        if len(cont) > max_len:
            raise PlmlabError(f"a continuation of {len(cont)} tokens is longer than the model's {max_len} positions")
        keep = max_len + 1 - len(cont)
        out.append((ctx[-keep:] if len(ctx) > keep else ctx, cont))
    return out


@torch.no_grad()
def score_causal(model, tokenizer, pairs: list[Pair], batch_size: int) -> list[tuple[float, bool]]:
    pairs = fit_window(pairs, model.config.max_positions)
    groups = group_by_context(pairs)
    groups.sort(key=lambda g: -len(g[0]))  # similar lengths together: little padding
    results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
    for chunk in chunk_groups(groups, [len(g[1]) for g in groups], batch_size):
        conts = [[pairs[i][1] for i in idx] for _, idx in chunk]
        scores = score_chunk(model, [ctx for ctx, _ in chunk], conts)
        for (_, idx), group_scores in zip(chunk, scores):
            for i, s in zip(idx, group_scores):
                results[i] = s
    return results


def score_chunk(model, contexts: list[list[int]], conts: list[list[list[int]]]) -> list[list[tuple[float, bool]]]:
    """Per context, (logp, is_greedy) of each of its continuations."""
    device = next(model.parameters()).device
    G, Lc = len(contexts), max(len(c) for c in contexts)
    ids = torch.zeros(G, Lc, dtype=torch.long)
    mask = torch.zeros(G, Lc, dtype=torch.long)
    for g, ctx in enumerate(contexts):  # left padding: every context ends at column Lc - 1
        ids[g, Lc - len(ctx):], mask[g, Lc - len(ctx):] = torch.tensor(ctx), 1
    ids, mask = ids.to(device), mask.to(device)
    rows = [(g, c) for g, cs in enumerate(conts) for c in cs]  # one row per continuation
    cache = model.new_cache(G, Lc + max(len(c) for _, c in rows) - 1)
    out = model(ids, attention_mask=mask, position_ids=positions_from_padding(mask), cache=cache)
    first = out.logits[:, -1].float().log_softmax(-1)  # (G, V): predicts every cont[0]
    later: dict[int, torch.Tensor] = {}  # row -> (len - 1, V) log-probs of cont[1:]
    for bucket in length_buckets([len(c) - 1 for _, c in rows]):
        later.update(continue_rows(model, cache, mask, [rows[r] for r in bucket], bucket))
    scores: list[list[tuple[float, bool]]] = [[] for _ in contexts]
    for r, (g, c) in enumerate(rows):
        logp = torch.cat([first[g][None], later[r]]) if r in later else first[g][None]  # (n, V)
        scores[g].append(token_score(logp, c))
    return scores


def length_buckets(lengths: list[int], slack: float = 1.5) -> list[list[int]]:
    """Row indices grouped by length (the longest at most `slack` x the shortest, + 2), so right
    padding wastes little; rows of length 0 (one-token continuations) need no pass at all."""
    order = sorted((r for r, n in enumerate(lengths) if n > 0), key=lambda r: lengths[r])
    buckets: list[list[int]] = []
    for r in order:
        if buckets and lengths[r] <= slack * lengths[buckets[-1][0]] + 2:
            buckets[-1].append(r)
        else:
            buckets.append([r])
    return buckets


def continue_rows(model, cache, mask, rows, row_ids: list[int]) -> dict[int, torch.Tensor]:
    """Run each continuation minus its last token on a copy of its context's cache row."""
    device = mask.device
    index = torch.tensor([g for g, _ in rows], device=device)  # (R,)
    T = max(len(c) for _, c in rows) - 1
    view = copy.copy(cache)  # (R, KV, Lc + T, hd): the prefill's rows, each continuation on its own copy
    view.k, view.v = [k.index_select(0, index) for k in cache.k], [v.index_select(0, index) for v in cache.v]
    feed = torch.zeros(len(rows), T, dtype=torch.long)
    for r, (_, c) in enumerate(rows):
        feed[r, :len(c) - 1] = torch.tensor(c[:-1])
    starts = mask.sum(-1)[index]  # (R,) real context tokens: where the continuation's positions start
    positions = starts[:, None] + torch.arange(T, device=device)[None]  # (R, T)
    positions = positions.clamp(max=model.config.max_positions - 1)  # only padding goes past the window
    full_mask = torch.cat([mask[index], torch.ones(len(rows), T, dtype=torch.long, device=device)], 1)
    logp = model(feed.to(device), attention_mask=full_mask, position_ids=positions,
                 cache=view).logits.float().log_softmax(-1)  # (R, T, V)
    return {r: logp[i, :len(c) - 1] for i, (r, (_, c)) in enumerate(zip(row_ids, rows))}
