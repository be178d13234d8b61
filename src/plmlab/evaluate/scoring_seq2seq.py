"""Encoder-decoder (T5) scoring: the context is the encoder's input, the continuation the
decoder's target (teacher forced from the start token). Each distinct context is encoded once;
its encoder output is copied to the rows of its continuations."""

from __future__ import annotations

import torch

from ..masks import IGNORE_INDEX
from .scoring_parts import Pair, chunk_groups, group_by_context, token_score


@torch.no_grad()
def score_seq2seq(model, tokenizer, pairs: list[Pair], batch_size: int) -> list[tuple[float, bool]]:
    limit = model.config.max_positions  # T5's relative positions have no hard limit; keep lm-eval's cut
    pairs = [(ctx[-limit:], cont) for ctx, cont in pairs]
    groups = group_by_context(pairs)
    results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
    for chunk in chunk_groups(groups, [len(g[1]) for g in groups], batch_size):
        index = [g for g, (_, idx) in enumerate(chunk) for _ in idx]  # the context row of each pair
        targets = [pairs[i][1] for _, idx in chunk for i in idx]
        scores = score_rows(model, [ctx for ctx, _ in chunk], index, targets)
        for i, s in zip([i for _, idx in chunk for i in idx], scores):
            results[i] = s
    return results


def score_rows(model, contexts: list[list[int]], index: list[int],
               targets: list[list[int]]) -> list[tuple[float, bool]]:
    device = next(model.parameters()).device
    pad = model.config.pad_token_id or 0
    S = max(len(c) for c in contexts)
    ids = torch.full((len(contexts), S), pad, dtype=torch.long)
    mask = torch.zeros(len(contexts), S, dtype=torch.long)
    for g, ctx in enumerate(contexts):  # right padding, as the encoder's padding mask expects
        ids[g, :len(ctx)], mask[g, :len(ctx)] = torch.tensor(ctx), 1
    ids, mask = ids.to(device), mask.to(device)
    memory = model.encode(ids, mask)  # (G, S, d): once per context
    T = max(len(t) for t in targets)
    labels = torch.full((len(targets), T), IGNORE_INDEX, dtype=torch.long)
    for r, t in enumerate(targets):
        labels[r, :len(t)] = torch.tensor(t)
    labels = labels.to(device)
    rows = torch.tensor(index, device=device)
    out = model(encoder_last_hidden_state=memory[rows], attention_mask=mask[rows], labels=labels)
    logp = out.logits.float().log_softmax(-1)  # (R, T, V)
    scores = []
    for r, t in enumerate(targets):
        scores.append(token_score(logp[r, :len(t)], t))
    return scores
