"""GLM scoring: the continuation is the blank (Du et al. 2022, section 2.3: classification as
blank filling). Part A is `[CLS] context [MASK] <eos>`; the continuation is one Part B block,
`[sop] c1 .. cn` at the [MASK]'s position, whose tokens predict c1 .. cn (the last is never fed;
[eop] is not scored, as lm-eval scores no end token).

Part A is run once per context into the KV cache (bidirectional: `glm_layout` with no block);
the cache rows are copied to each continuation, whose block then attends to all of Part A and
to itself causally: exactly the rows of GLM's mask for that block (see families/glm.py).

    Part A (G rows, right-padded)   [CLS] x1 x2 [M] <eos> pad      once per context
    block  (R rows, right-padded)   [sop] c1 c2 pad                 on a copy of its context's row
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PlmlabError
from ..families.glm import GlmTokens, glm_layout, glm_positions
from .scoring_parts import Pair, chunk_groups, group_by_context, token_score


@torch.no_grad()
def score_glm(model, tokenizer, pairs: list[Pair], batch_size: int) -> list[tuple[float, bool]]:
    tok = GlmTokens.from_tokenizer(tokenizer)
    limit = model.config.max_positions
    if any(len(cont) + 1 > limit for _, cont in pairs):
        raise PlmlabError(f"a continuation is longer than the model's {limit} positions")
    # Part A: [CLS] + context (cut from the left to fit) + [MASK] + <eos>
    parts = [([tok.cls] + ctx[-(limit - 3):] + [tok.mask, tok.eos], cont) for ctx, cont in pairs]
    groups = group_by_context(parts)
    results: list[tuple[float, bool]] = [(0.0, False)] * len(pairs)
    for chunk in chunk_groups(groups, [len(g[1]) for g in groups], batch_size):
        order = [i for _, idx in chunk for i in idx]
        index = [g for g, (_, idx) in enumerate(chunk) for _ in idx]
        scores = score_blocks(model, tok, [a for a, _ in chunk], index, [parts[i][1] for i in order])
        for i, s in zip(order, scores):
            results[i] = s
    return results


def score_blocks(model, tok: GlmTokens, part_as: list[list[int]], index: list[int],
                 conts: list[list[int]]) -> list[tuple[float, bool]]:
    device = next(model.parameters()).device
    G, La, R = len(part_as), max(len(a) for a in part_as), len(conts)
    Tb = max(len(c) for c in conts)  # [sop] + cont[:-1]
    ids = np.zeros((G, La), np.int64)
    pos = np.zeros((G, 2, La), np.int64)
    mask = np.zeros((G, La, La), np.int64)
    for g, a in enumerate(part_as):  # each Part A laid out alone, right-padded
        ids[g, :len(a)] = a
        pos[g, :, :len(a)], mask[g, :len(a), :len(a)] = glm_layout(len(a), [])
    cache = model.new_cache(G, La + Tb)
    model(torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device),
          position_ids=torch.from_numpy(pos).to(device), cache=cache)
    cache.reorder(torch.tensor(index, device=device))  # (R, KV, La + Tb, hd)
    feed = np.zeros((R, Tb), np.int64)
    block_pos = np.zeros((R, 2, Tb), np.int64)
    block_mask = np.zeros((R, Tb, La + Tb), np.int64)
    causal = np.tril(np.ones((Tb, Tb), np.int64))
    for r, (g, cont) in enumerate(zip(index, conts)):
        n_a, m = len(part_as[g]), len(part_as[g]) - 2  # the [MASK] sits just before <eos>
        feed[r, :len(cont)] = [tok.sop] + cont[:-1]
        block_pos[r] = glm_positions(n_a, [(m, Tb)])[:, n_a:]  # (2, Tb): (m, 1), (m, 2), ...
        block_mask[r, :, :n_a] = 1  # all of its own Part A (none of the padding)
        block_mask[r, :, La:] = causal  # and its block up to itself
    logits = model(torch.from_numpy(feed).to(device), attention_mask=torch.from_numpy(block_mask).to(device),
                   position_ids=torch.from_numpy(block_pos).to(device), cache=cache).logits
    logp = logits.float().log_softmax(-1)  # (R, Tb, V)
    scores = []
    for r, cont in enumerate(conts):
        scores.append(token_score(logp[r, :len(cont)], cont))
    return scores
