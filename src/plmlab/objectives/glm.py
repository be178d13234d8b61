"""GLM autoregressive blank infilling (Du et al. 2022, sections 2.1 and 2.3).

Each example picks one of three ways to blank a text (mixed by configurable rates):

  [MASK]   span lengths ~ Poisson(3), kept in 1..39, drawn until they cover >= 15 % of the
           tokens; spans placed uniformly at random, never overlapping or touching.
  [sMASK]  whole sentences, in random order, until they cover >= 15 % (multi-task GLM_Sent).
  [gMASK]  one span at the end, its length uniform in [50 %, 100 %] of the text (GLM_Doc).

The blanked text is then laid out as Part A + Part B by `families.glm.build_blank_infilling`
(the ASCII picture of the positions and the mask is there). Examples are chunks of one
document each: a document longer than the content budget is cut into equal chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.shards import TokenData
from ..errors import PlmlabError
from .base import Objective
from ..families.fits import Fits
from .options import ObjectiveOptions, option
from ..families.glm import TWO_D_POSITIONS, GlmTokens, build_blank_infilling, part_a_length

MODES = ("mask", "smask", "gmask")
SENTENCE_END = (".", "?", "!", ";", ":", "\n")  # the GLM repo's sentence-end test, on token text


def span_length_pmf(lam: float, max_len: int) -> np.ndarray:
    """Poisson(lam) probabilities of lengths 1..max_len, renormalised (as blocklm_utils.py)."""
    k = np.arange(1, max_len + 1)
    log_p = k * math.log(lam) - lam - np.array([math.lgamma(x + 1) for x in k])
    p = np.exp(log_p)
    return p / p.sum()


def sample_span_lengths(n: int, ratio: float, pmf: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Draw lengths until they cover at least ceil(ratio * n) tokens (at least one span).

    Each draw is independent of the decision to draw it, so by Wald's identity the pooled
    lengths follow `pmf` exactly. If the spans cannot fit with a gap between each pair (a
    text of a few dozen tokens), the last one is clipped to what is still needed.
    """
    target = max(1, math.ceil(ratio * n))
    lengths: list[int] = []
    while sum(lengths) < target:
        lengths.append(int(rng.choice(len(pmf), p=pmf)) + 1)
    if sum(lengths) + len(lengths) - 1 > n:
        lengths[-1] = target - sum(lengths[:-1])  # >= 1; k <= target makes 2 target - 1 <= n fit
    return lengths


def place_spans(lengths: list[int], n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Uniformly random non-overlapping placement, at least one untouched token between spans.

    With k spans, `slack` = n - sum(lengths) - (k - 1) spare tokens go into k + 1 gaps; a
    uniform draw of k sorted offsets in [0, slack] (stars and bars: k distinct values from
    slack + k, minus their rank) makes every placement equally likely.
    """
    order = rng.permutation(len(lengths))  # the lengths' left-to-right order is random too
    lengths = [lengths[i] for i in order]
    k = len(lengths)
    slack = n - sum(lengths) - (k - 1)
    if slack < 0:
        raise ValueError(f"spans of total length {sum(lengths)} do not fit in {n} tokens")
    offsets = np.sort(rng.choice(slack + k, size=k, replace=False)) - np.arange(k)
    spans, used = [], 0
    for i, (off, length) in enumerate(zip(offsets, lengths)):
        start = int(off) + used + i
        spans.append((start, start + length))
        used += length
    return spans


def sentence_spans(bounds: list[tuple[int, int]], n: int, ratio: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """[sMASK]: whole sentences in random order until they cover >= ratio * n tokens."""
    target = max(1, math.ceil(ratio * n))
    chosen, covered = [], 0
    for i in rng.permutation(len(bounds)):
        chosen.append(bounds[i])
        covered += bounds[i][1] - bounds[i][0]
        if covered >= target:
            break
    return sorted(chosen)


def generation_span(n: int, min_ratio: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """[gMASK]: one span at the end, length uniform in [ceil(min_ratio * n), n]."""
    length = int(rng.integers(max(1, math.ceil(min_ratio * n)), n + 1))
    return [(n - length, n)]


def content_budget(seq_len: int, ratio: float) -> int:
    """Largest text length n whose example always fits seq_len tokens.

    An example is n + 2 ([CLS], <eos>) + 2 per blank (its mask, its [sop]/[eop]) long, and
    every mode makes at most ceil(ratio * n) blanks ([gMASK]: one).
    """
    n = seq_len - 4
    while n > 1 and n + 2 + 2 * max(1, math.ceil(ratio * n)) > seq_len:
        n -= 1
    if n < 1:
        raise PlmlabError(f"seq_len {seq_len} is too short for GLM blank infilling (need at least 5)")
    return n


@dataclass
class GlmOptions(ObjectiveOptions):
    """Blank infilling's options; the three *_rate mix the modes (normalised to sum to 1)."""

    mask_rate: float = option(1.0, float, "GLM: share of examples blanked with [MASK] spans", low=0)
    smask_rate: float = option(0.0, float, "GLM: share of examples blanked with [sMASK] sentences", low=0)
    gmask_rate: float = option(0.0, float, "GLM: share of examples blanked with one [gMASK] span at the end", low=0)
    # [MASK] blanks need an untouched token between them: at most half the text can go.
    mask_ratio: float = option(0.15, float, "[MASK]: share of tokens blanked", low=0, high=0.5, open_low=True)
    sentence_ratio: float = option(0.15, float, "[sMASK]: share of tokens in blanked sentences", low=0, high=1,
                                   open_low=True)
    poisson_lambda: float = option(3.0, float, "[MASK]: mean of the Poisson span lengths", low=0, open_low=True)
    max_span: int = option(39, int, "[MASK]: longest span", low=1)
    gmask_min_ratio: float = option(0.5, float, "[gMASK]: shortest span as a share of the text", low=0, high=1,
                                    open_low=True)
    shuffle_spans: bool = option(True, bool, "Part B spans in random order (GLM's permutation)")


class BlankInfilling(Objective):
    """`glm`: blank infilling with [MASK]; `smask_rate` / `gmask_rate` mix in the other two."""

    name = "glm"
    tokenizer_style = "glm"
    Options = GlmOptions
    fits = Fits(arch="decoder", head="lm", positions=TWO_D_POSITIONS)
    demo = "fill-blanks"

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        o = self.opts
        self.tok = GlmTokens.from_tokenizer(tokenizer)
        self.rates = self._rates(o)
        self.mask_ratio, self.sentence_ratio, self.gmask_min_ratio = o.mask_ratio, o.sentence_ratio, o.gmask_min_ratio
        self.shuffle = o.shuffle_spans
        self.pmf = span_length_pmf(o.poisson_lambda, o.max_span)
        self.budget = content_budget(seq_len, max(self.mask_ratio, self.sentence_ratio))
        self._chunks: dict[int, np.ndarray] = {}

    def _rates(self, o: GlmOptions) -> np.ndarray:
        explicit = {k for k in ("smask_rate", "gmask_rate") if k in self.options}
        rates = {m: getattr(o, f"{m}_rate") for m in MODES}
        if explicit and "mask_rate" not in self.options:  # the rest goes to [MASK]
            rates["mask"] = max(0.0, 1.0 - rates["smask"] - rates["gmask"])
        values = np.array([rates[m] for m in MODES])
        if (values < 0).any() or values.sum() <= 0:
            raise PlmlabError(f"objective {self.name}: mask/smask/gmask rates must be >= 0 and not all 0")
        return values / values.sum()

    # --- data ---------------------------------------------------------------------------------
    def _chunk_index(self, data: TokenData) -> np.ndarray:
        """Cumulative chunk counts per document: a document of L tokens gives ceil(L / budget)."""
        key = id(data)
        if key not in self._chunks:
            lengths = np.diff(np.asarray(data.doc_offsets))
            self._chunks = {key: np.concatenate(([0], np.cumsum(-(-lengths // self.budget))))}
        return self._chunks[key]

    def num_examples(self, data: TokenData) -> int:
        return int(self._chunk_index(data)[-1])

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        cum = self._chunk_index(data)
        d = int(np.searchsorted(cum, index, side="right")) - 1
        doc_start, doc_end = int(data.doc_offsets[d]), int(data.doc_offsets[d + 1])
        m = int(cum[d + 1] - cum[d])  # equal chunks, so none is a short leftover
        c = index - int(cum[d])
        a = doc_start + c * (doc_end - doc_start) // m
        b = doc_start + (c + 1) * (doc_end - doc_start) // m
        sents = np.asarray(data.sent_offsets[data.doc_sents[d]: data.doc_sents[d + 1] + 1])
        cuts = sorted({a, b, *[int(s) for s in sents if a < s < b]})
        bounds = [(x - a, y - a) for x, y in zip(cuts[:-1], cuts[1:])]
        return self.blank(np.asarray(data.tokens[a:b], dtype=np.int64), bounds, rng)

    def from_ids(self, ids, rng, ids_b=None):
        content = np.asarray(list(ids) + list(ids_b or []), dtype=np.int64)[: self.budget]
        return self.blank(content, self.sentence_bounds(content), rng)

    def sentence_bounds(self, content: np.ndarray) -> list[tuple[int, int]]:
        """Sentences of a bare token sequence: cut after tokens holding . ? ! ; : or a newline."""
        bounds, start = [], 0
        for i, t in enumerate(content):
            text = self.tokenizer.decode([int(t)], skip_special_tokens=False)
            if any(ch in text for ch in SENTENCE_END):
                bounds.append((start, i + 1))
                start = i + 1
        if start < len(content):
            bounds.append((start, len(content)))
        return bounds

    # --- the objective ------------------------------------------------------------------------
    def blank(self, content: np.ndarray, bounds: list[tuple[int, int]], rng: np.random.Generator) -> dict:
        """Pick a mode by the rates, blank `content` (n,) and lay it out as Part A + Part B."""
        n = len(content)
        if n == 0:
            raise PlmlabError("GLM blank infilling got an empty text")
        mode = MODES[int(rng.choice(len(MODES), p=self.rates))]
        if mode == "mask":
            spans = place_spans(sample_span_lengths(n, self.mask_ratio, self.pmf, rng), n, rng)
        elif mode == "smask":
            spans = sentence_spans(bounds or [(0, n)], n, self.sentence_ratio, rng)
        else:
            spans = generation_span(n, self.gmask_min_ratio, rng)
        mask_id = {"mask": self.tok.mask, "smask": self.tok.smask, "gmask": self.tok.gmask}[mode]
        order = rng.permutation(len(spans)).tolist() if self.shuffle else list(range(len(spans)))
        return build_blank_infilling(content, spans, [mask_id] * len(spans), order, self.tok)

    def describe(self, example: dict) -> dict:
        """Extra JSON for `plmlab objective`: Part A, Part B and each blank."""
        ids, pos, labels = (np.asarray(example[k]) for k in ("input_ids", "position_ids", "labels"))
        n_a = part_a_length(pos)
        blanks = []
        for i in range(n_a, len(ids)):
            if pos[1, i] == 1:  # a [sop]: a new span starts
                blanks.append({"mask_position": int(pos[0, i]), "mask_token_id": int(ids[pos[0, i]]),
                               "input": [], "target": []})
            blanks[-1]["input"].append(int(ids[i]))
            blanks[-1]["target"].append(int(labels[i]))
        return {"part_a": ids[:n_a].tolist(), "part_b": ids[n_a:].tolist(), "part_a_length": n_a,
                "sop_token_id": self.tok.sop, "eop_token_id": self.tok.eop, "blanks": blanks}


class SentenceInfilling(BlankInfilling):
    """`glm-smask`: every example blanks whole sentences with [sMASK]."""

    name = "glm-smask"
    option_defaults = {"mask_rate": 0.0, "smask_rate": 1.0, "gmask_rate": 0.0}


class GenerationInfilling(BlankInfilling):
    """`glm-gmask`: every example blanks one long span at the end with [gMASK]."""

    name = "glm-gmask"
    option_defaults = {"mask_rate": 0.0, "smask_rate": 0.0, "gmask_rate": 1.0}


class MultiTaskInfilling(BlankInfilling):
    """`glm-mix`: the GLM repository's multi-task mixture (bert-prob 0.5, gap-sentence-prob
    0.3, the remaining 0.2 generation; config/ds_block_10B.sh and friends)."""

    name = "glm-mix"
    option_defaults = {"mask_rate": 0.5, "smask_rate": 0.3, "gmask_rate": 0.2}


OBJECTIVES = {c.name: c for c in (BlankInfilling, SentenceInfilling, GenerationInfilling, MultiTaskInfilling)}
