"""T5 span corruption (Raffel et al. 2020, section 3.3.4; the "random_spans" preprocessors of
google-research/text-to-text-transfer-transformer, as reproduced by nanoT5 and HF's Flax example).

For L raw tokens, noise density r and mean span length m:

  n = round(L * r) clipped to [1, L - 1] noise tokens, k = max(1, round(n / m)) noise spans;
  the noise tokens and the L - n kept tokens are each cut into k non-empty segments uniformly
  at random, then interleaved starting with kept tokens:

      raw     a b c d e f g h i j          kept [a b] [e f g] ; noise [c d] [h i j]
      input   a b <X0> e f g <X1> </s>     each noise span -> one sentinel, then EOS
      target  <X0> c d <X1> h i j </s>     each span after its sentinel, then EOS

Sentinels count down from the top of the vocabulary (<extra_id_0> is the last id). Raw
windows are `raw_length` tokens of the stream doc0 </s> doc1 </s> ... (nanoT5's packing), where
`raw_length` is the longest that corrupts to at most `seq_len` encoder tokens
(`compute_input_and_target_lengths`: 568 -> 512 inputs, 114 targets for r = 0.15, m = 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.shards import TokenData
from ..errors import PlmlabError
from .base import Objective
from ..families.fits import Fits
from .options import ObjectiveOptions, option
from .clm import CausalLM


# --- lengths ----------------------------------------------------------------------------------
def corrupted_lengths(raw_length: int, noise_density: float = 0.15, mean_span: float = 3.0) -> tuple[int, int]:
    """(input length, target length) that `raw_length` tokens corrupt to, EOS included.

    Python's round (half to even) as in T5's `random_spans_helper`."""
    noise = int(round(raw_length * noise_density))
    spans = int(round(noise / mean_span))
    return raw_length - noise + spans + 1, noise + spans + 1


def compute_input_and_target_lengths(inputs_length: int, noise_density: float = 0.15,
                                     mean_span: float = 3.0) -> tuple[int, int]:
    """T5's `random_spans_helper`: the longest raw length whose corrupted input fits in
    `inputs_length`, and the target length it gives. (512, 0.15, 3) -> (568, 114)."""
    raw = inputs_length - 1
    while corrupted_lengths(raw + 1, noise_density, mean_span)[0] <= inputs_length:
        raw += 1
    targets = corrupted_lengths(raw, noise_density, mean_span)[1]
    if noise_density == 0.5 and targets > inputs_length:  # T5's "minor hack": equal lengths
        raw, targets = raw - 1, targets - 1
    return raw, targets


# --- the noise mask ------------------------------------------------------------------------------
def random_segmentation(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random composition of n_items into n_segments positive parts
    (k - 1 distinct cut points among the n_items - 1 gaps)."""
    cuts = np.zeros(n_items - 1, dtype=bool)
    cuts[: n_segments - 1] = True
    cuts = rng.permutation(cuts)
    segment_id = np.concatenate([[0], np.cumsum(cuts)])  # (n_items,)
    return np.bincount(segment_id, minlength=n_segments)


def random_spans_noise_mask(length: int, noise_density: float, mean_span: float,
                            rng: np.random.Generator) -> np.ndarray:
    """Boolean (length,) mask, True = noise; never starts with noise."""
    if length < 2:
        raise PlmlabError(f"span corruption needs at least 2 tokens, got {length}")
    n_noise = min(max(int(round(length * noise_density)), 1), length - 1)
    n_spans = max(int(round(n_noise / mean_span)), 1)
    n_spans = min(n_spans, length - n_noise)  # only binds when density > 0.5: keep segments non-empty
    noise_lengths = random_segmentation(n_noise, n_spans, rng)
    kept_lengths = random_segmentation(length - n_noise, n_spans, rng)
    interleaved = np.stack([kept_lengths, noise_lengths], axis=1).reshape(-1)  # kept, noise, kept, ...
    is_noise = np.repeat(np.tile([False, True], n_spans), interleaved)
    return is_noise


# --- corrupt and restore ------------------------------------------------------------------------
def span_starts(mask: np.ndarray) -> np.ndarray:
    """True where a run of `mask` begins."""
    return mask & ~np.concatenate([[False], mask[:-1]])


def corrupt(ids: np.ndarray, noise: np.ndarray, sentinels: list[int], eos: int) -> tuple[np.ndarray, np.ndarray]:
    """(input, target) for token ids and their noise mask (T5's noise_span_to_unique_sentinel
    applied to the noise for the input and to the kept tokens for the target)."""
    ids = np.asarray(ids, dtype=np.int64)
    n_spans = int(span_starts(noise).sum())
    if n_spans > len(sentinels):
        raise PlmlabError(f"this example has {n_spans} noise spans but the tokenizer only {len(sentinels)} sentinels")
    return _replace_spans(ids, noise, sentinels, eos), _replace_spans(ids, ~noise, sentinels, eos)


def _replace_spans(ids: np.ndarray, drop: np.ndarray, sentinels: list[int], eos: int) -> np.ndarray:
    """Each run of `drop` becomes the next sentinel; EOS at the end."""
    starts = span_starts(drop)
    out = ids.copy()
    out[starts] = np.asarray(sentinels, dtype=np.int64)[: int(starts.sum())]
    keep = ~drop | starts
    return np.concatenate([out[keep], [eos]])


def restore(inputs: list[int], targets: list[int], sentinels: list[int], eos: int) -> list[int]:
    """The original tokens from an (input, target) pair: each sentinel in the input is replaced
    by what follows the same sentinel in the target (the round trip the tests check). Only
    the final EOS of each is dropped: the packed stream has EOS between documents."""
    inputs, targets = _strip_eos(list(inputs), eos), _strip_eos(list(targets), eos)  # EOS may occur inside
    spans, current = {}, None
    for t in targets:
        if t in sentinels:
            current = spans.setdefault(t, [])
        elif current is not None:
            current.append(t)
    out = []
    for t in inputs:
        out.extend(spans[t] if t in spans else [t])
    return out


def _strip_eos(ids: list[int], eos: int) -> list[int]:
    return ids[:-1] if ids and ids[-1] == eos else ids


# --- the objective ------------------------------------------------------------------------------
@dataclass
class SpanOptions(ObjectiveOptions):
    noise_density: float = option(0.15, float, "span corruption: share of tokens dropped", low=0, high=1,
                                  open_low=True, open_high=True, flag="--noise-density", metavar="P")
    mean_noise_span_length: float = option(3.0, float, "span corruption: mean noise span length", low=1,
                                           flag="--mean-span-length", metavar="L")
    truncate: bool = option(False, bool, "cut a text too long for one example instead of refusing it")


class SpanCorruption(Objective):
    """Encoder input = text with sentinels, labels = the decoder's targets (the model shifts
    them right from the decoder start token). Options: noise_density (0.15), mean_noise_span_length
    (3.0); `seq_len` is the encoder input length."""

    name = "span-corruption"
    tokenizer_style = "t5"
    Options = SpanOptions
    fits = Fits(arch="encoder-decoder", head="lm")
    demo = "span-filling"

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        noise_density, mean_noise_span_length = self.opts.noise_density, self.opts.mean_noise_span_length
        self.sentinels = list(tokenizer.sentinel_ids or [])
        if not self.sentinels:
            raise PlmlabError("span corruption needs a tokenizer with sentinel tokens (<extra_id_0>, ...); "
                              "this one has none (train one with style t5)")
        if tokenizer.eos_id is None:
            raise PlmlabError("span corruption needs a tokenizer with an end-of-sequence token (</s>)")
        self.eos = tokenizer.eos_id
        self.noise_density, self.mean_span, self.truncate = noise_density, mean_noise_span_length, self.opts.truncate
        self.raw_length, self.target_length = compute_input_and_target_lengths(seq_len, noise_density,
                                                                              mean_noise_span_length)
        if self.raw_length < 2:
            raise PlmlabError(f"seq_len {seq_len} is too short for span corruption")
        spans = max(1, round(round(self.raw_length * noise_density) / mean_noise_span_length))
        if spans > len(self.sentinels):
            raise PlmlabError(f"seq_len {seq_len} needs {spans} noise spans per example but the tokenizer has only "
                              f"{len(self.sentinels)} sentinels (lower --seq-len or raise the mean span length)")
        self._stream = CausalLM(tokenizer, self.raw_length)  # packs doc0 </s> doc1 </s> ...

    def num_examples(self, data: TokenData) -> int:
        return (data.n_tokens + data.n_docs) // self.raw_length

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        window = self._stream._window(data, index * self.raw_length, self.raw_length)
        return self.corrupt_ids(window, rng)

    def corrupt_ids(self, ids: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        noise = random_spans_noise_mask(len(ids), self.noise_density, self.mean_span, rng)
        inputs, targets = corrupt(ids, noise, self.sentinels, self.eos)
        return {"input_ids": inputs, "attention_mask": np.ones_like(inputs), "labels": targets}

    def from_ids(self, ids, rng, ids_b=None):
        if len(ids) > self.raw_length:
            if not self.truncate:
                raise PlmlabError(f"the text has {len(ids)} tokens; with seq_len {self.seq_len} span corruption "
                                  f"takes at most {self.raw_length} (raise --seq-len, or --set truncate=true)")
            ids = ids[: self.raw_length]
        return self.corrupt_ids(np.asarray(ids, dtype=np.int64), rng)

    def describe(self, example: dict) -> dict:
        """Extra fields of the `plmlab objective` JSON view."""
        target = [int(t) for t in example["labels"]]
        used = [s for s in self.sentinels if s in target]
        return {"target_tokens": self.tokenizer.convert_ids_to_tokens(target), "sentinel_ids": used,
                "position_ids": list(range(len(example["input_ids"]))),
                "noise_density": self.noise_density, "mean_noise_span_length": self.mean_span,
                "raw_length": self.raw_length, "inputs_length": self.seq_len, "targets_length": self.target_length}


OBJECTIVES = {"span-corruption": SpanCorruption}
