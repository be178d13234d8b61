"""Unigram and bigram baselines: what a language model must beat to have learned anything.

Counts come from the training stream (documents joined by EOS, exactly what the causal
objective trains on); the baselines are scored on the very (context, target) token pairs of
the validation batches the model is evaluated on. Add-k smoothing:

    unigram  p(b)    = (c(b) + k) / (N + k V)
    bigram   p(b|a)  = (c(a, b) + k) / (c(a) + k V)

k is the best of a small grid *on the validation pairs themselves*: that flatters the
baselines, so "the model beats them" is a conservative claim.
"""

from __future__ import annotations

import math

import numpy as np

K_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def stream_with_eos(tokens: np.ndarray, doc_offsets: np.ndarray, eos: int) -> np.ndarray:
    """doc0 EOS doc1 EOS ... as int64 (the causal objective's training stream)."""
    return np.insert(np.asarray(tokens, dtype=np.int64), np.asarray(doc_offsets[1:], dtype=np.int64), eos)


def ngram_baselines(stream: np.ndarray, contexts: np.ndarray, targets: np.ndarray, vocab: int) -> dict[str, dict]:
    """Cross-entropy (nats/token) and perplexity of add-k unigram and bigram models.

    stream: training token ids; contexts/targets: the evaluated pairs (previous token, token).
    """
    stream = np.asarray(stream, dtype=np.int64)
    contexts, targets = np.asarray(contexts, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    unigram = np.bincount(stream, minlength=vocab).astype(np.float64)
    # Bigram counts stay sparse: a V x V table would be 8192^2 entries for the mini presets.
    pairs, pair_counts = np.unique(stream[:-1] * vocab + stream[1:], return_counts=True)
    context_totals = np.bincount(stream[:-1], minlength=vocab).astype(np.float64)
    query = contexts * vocab + targets
    where = np.clip(np.searchsorted(pairs, query), 0, len(pairs) - 1)
    seen = np.where(pairs[where] == query, pair_counts[where], 0).astype(np.float64)

    def best(log_prob) -> dict:
        losses = {k: -float(np.mean(log_prob(k))) for k in K_GRID}
        k = min(losses, key=losses.get)
        return {"loss": losses[k], "ppl": math.exp(losses[k]), "k": k}

    return {
        "unigram": best(lambda k: np.log(unigram[targets] + k) - np.log(len(stream) + k * vocab)),
        "bigram": best(lambda k: np.log(seen + k) - np.log(context_totals[contexts] + k * vocab)),
    }
