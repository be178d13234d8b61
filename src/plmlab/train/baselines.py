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

from ..masks import IGNORE_INDEX
from .data import fixed_batches

K_GRID = (1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001)


def stream_with_eos(tokens: np.ndarray, doc_offsets: np.ndarray, eos: int) -> np.ndarray:
    """doc0 EOS doc1 EOS ... as int64 (the causal objective's training stream)."""
    return np.insert(np.asarray(tokens, dtype=np.int64), np.asarray(doc_offsets[1:], dtype=np.int64), eos)


def validation_pairs(setup):
    """(training stream, contexts, targets, vocabulary) of a pretraining run's validation batches
    (train/pretrain_setup.PretrainSetup), or None where its val_loss is not a mean cross-entropy
    over token targets: no validation batches, batches without token `labels`, or a pair label
    (NSP / SOP) whose loss is added to the tokens'. Contexts are the input tokens at the targets'
    positions (None where inputs and targets are different sequences: encoder-decoder). EOS
    joins the documents where the objective trains on them that way (causal LM)."""
    batches = setup.task.val_batches
    if not batches or any("labels" not in b or any(k.endswith("_label") for k in b) for b in batches):
        return None
    data, eos = setup.train_data, setup.tokenizer.eos_id
    stream = with_inserted_targets(setup, stream_with_eos(data.tokens, data.doc_offsets, eos)
                                   if setup.objective.needs_eos and eos is not None
                                   else np.asarray(data.tokens, dtype=np.int64))
    labels = np.concatenate([b["labels"].flatten().numpy() for b in batches])
    keep = labels != IGNORE_INDEX
    vocab = max(setup.tokenizer.vocab_size, int(stream.max()) + 1, int(labels[keep].max(initial=0)) + 1)
    aligned = all(b["input_ids"].shape == b["labels"].shape for b in batches)
    inputs = np.concatenate([b["input_ids"].flatten().numpy() for b in batches]) if aligned else None
    return stream, inputs[keep] if aligned else None, labels[keep], vocab


def with_inserted_targets(setup, stream: np.ndarray, batches: int = 64) -> np.ndarray:
    """`stream` plus the ids an objective puts in its targets that the text never holds (T5's
    sentinels, BART's BOS, GLM's end-of-span), each repeated so that its share of the result is its
    share of the targets of `batches` training batches: without them the baseline would pay ~20
    nats for each, and a model would "beat" it by learning where they go, not the text. Causal
    and masked LM targets are text: nothing is added."""
    made = fixed_batches(setup.objective, setup.train_data, setup.options.seed, setup.options.batch_size, batches)
    sample = np.concatenate([b["labels"][b["labels"] != IGNORE_INDEX].numpy() for b in made]).astype(np.int64)
    in_text = np.bincount(stream, minlength=int(sample.max(initial=0)) + 1) > 0
    inserted, counts = np.unique(sample[~in_text[sample]], return_counts=True)
    text = max(1, len(sample) - int(counts.sum()))
    return np.concatenate([stream, np.repeat(inserted, np.round(counts * len(stream) / text).astype(np.int64))])


def _best(log_prob) -> dict:
    """The loss, perplexity and k of the add-k model whose k scores best on the pairs."""
    losses = {k: -float(np.mean(log_prob(k))) for k in K_GRID}
    k = min(losses, key=losses.get)
    return {"loss": losses[k], "ppl": math.exp(losses[k]), "k": k}


def unigram_baseline(stream: np.ndarray, targets: np.ndarray, vocab: int) -> dict:
    """Cross-entropy (nats/token) of `targets` under the add-k token frequencies of `stream`."""
    targets = np.asarray(targets, dtype=np.int64)
    unigram = np.bincount(np.asarray(stream, dtype=np.int64), minlength=vocab).astype(np.float64)
    return _best(lambda k: np.log(unigram[targets] + k) - np.log(len(stream) + k * vocab))


def ngram_baselines(stream: np.ndarray, contexts: np.ndarray, targets: np.ndarray, vocab: int) -> dict[str, dict]:
    """Cross-entropy (nats/token) and perplexity of add-k unigram and bigram models.

    stream: training token ids; contexts/targets: the evaluated pairs (previous token, token).
    """
    stream = np.asarray(stream, dtype=np.int64)
    contexts, targets = np.asarray(contexts, dtype=np.int64), np.asarray(targets, dtype=np.int64)
    # Bigram counts stay sparse: a V x V table would be 8192^2 entries for the mini presets.
    pairs, pair_counts = np.unique(stream[:-1] * vocab + stream[1:], return_counts=True)
    context_totals = np.bincount(stream[:-1], minlength=vocab).astype(np.float64)
    query = contexts * vocab + targets
    where = np.clip(np.searchsorted(pairs, query), 0, len(pairs) - 1)
    seen = np.where(pairs[where] == query, pair_counts[where], 0).astype(np.float64)
    return {"unigram": unigram_baseline(stream, targets, vocab),
            "bigram": _best(lambda k: np.log(seen + k) - np.log(context_totals[contexts] + k * vocab))}
