"""What every family's scorer (scoring_causal, _seq2seq, _glm, _pll) shares: the token pair, the
special ids around a text, grouping pairs by context, packing groups into batches, and a
continuation's summed log-probability. Below scoring.py, which picks a scorer per model."""

from __future__ import annotations

import torch

Pair = tuple[list[int], list[int]]  # (context ids, continuation ids)


def special_wrap(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after a text (BERT: [CLS] and [SEP])."""
    bare = tokenizer.encode("a", add_special_tokens=False)
    full = tokenizer.encode("a")
    at = next((i for i in range(len(full) - len(bare) + 1) if full[i:i + len(bare)] == bare), 0)
    return full[:at], full[at + len(bare):]


def group_by_context(pairs: list[Pair]) -> list[tuple[list[int], list[int]]]:
    """[(context ids, indices of the pairs that share it)], in first-seen order: a context is
    run once for all of its continuations."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, (ctx, _) in enumerate(pairs):
        groups.setdefault(tuple(ctx), []).append(i)
    return [(list(ctx), idx) for ctx, idx in groups.items()]


def chunk_groups(groups: list, sizes: list[int], batch_size: int) -> list[list]:
    """Consecutive groups packed so that each chunk holds at most `batch_size` pairs (a bigger
    group goes alone)."""
    chunks, current, n = [], [], 0
    for group, size in zip(groups, sizes):
        if current and n + size > batch_size:
            chunks.append(current)
            current, n = [], 0
        current.append(group)
        n += size
    return chunks + ([current] if current else [])


def token_score(logp, target: list[int]) -> tuple[float, bool]:
    """(sum of log p(target_t) over the rows of logp (n, V), whether every target was the argmax)."""
    t = torch.tensor(target, device=logp.device)
    picked = logp.gather(-1, t[:, None])[:, 0]  # (n,)
    return float(picked.sum()), bool((logp.argmax(-1) == t).all())
