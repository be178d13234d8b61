"""BART's denoising objectives (Lewis et al. 2019, section 2.2 and figure 2; fairseq's
`DenoisingDataset`): corrupt a document, and train the decoder to rebuild the original.

  masking      tokens are replaced by <mask> (BERT-style, no 80/10/10)
  deletion     tokens are removed; the model must find where something is missing
  infilling    spans with lengths ~ Poisson(lambda = 3) are each replaced by ONE <mask>;
               a span of length 0 inserts a <mask> (the model learns how many tokens are missing)
  permutation  the document's sentences are shuffled
  rotation     the document starts at a uniformly chosen token (wrapping around)

Any combination applies in the order permutation, masking, deletion, infilling, rotation
(fairseq's order); masking, deletion and infilling each take `mask_ratio` of the tokens they
see. The paper's best (section 5.1): infilling + permutation, 30 % of the tokens.

    original  <s> a b c . d e . </s>                       labels = the original
    input     <s> d <mask> . a <mask> b c . </s>           permutation + infilling (lengths 1, 0)
    decoder   </s> <s> a b c . d e .                       labels shifted right from </s>

Examples are whole sentences of one document packed up to seq_len - 2 tokens (a sentence longer
than that is cut), framed by the tokenizer's own <s> ... </s>.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.sentences import split_sentences
from ..errors import PlmlabError
from .base import Objective
from ..families.fits import Fits
from .options import ObjectiveOptions, option
from .pairs import Template

NOISES = ("permutation", "masking", "deletion", "infilling", "rotation")  # the order they apply in


# --- the noise functions: pure, (ids, rng) -> ids ------------------------------------------------
def permute_sentences(sentences: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [sentences[i] for i in rng.permutation(len(sentences))]


def _chosen(n: int, ratio: float, rng: np.random.Generator) -> np.ndarray:
    """A boolean (n,) mask with exactly round(ratio * n) positions set, uniformly at random."""
    chosen = np.zeros(n, dtype=bool)
    chosen[rng.choice(n, size=int(round(ratio * n)), replace=False)] = True
    return chosen


def mask_tokens(ids: np.ndarray, ratio: float, mask_id: int, rng: np.random.Generator) -> np.ndarray:
    return np.where(_chosen(len(ids), ratio, rng), mask_id, ids)


def delete_tokens(ids: np.ndarray, ratio: float, rng: np.random.Generator) -> np.ndarray:
    return ids[~_chosen(len(ids), ratio, rng)]


def span_lengths(n_tokens: int, ratio: float, lam: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson(lam) span lengths (zeros included) drawn until they cover round(ratio * n) tokens,
    the last one cut so they cover exactly that many (fairseq's `add_whole_word_mask`)."""
    target = int(round(ratio * n_tokens))
    lengths: list[int] = []
    total = 0
    while total < target:
        draws = rng.poisson(lam, size=max(8, int(2 * (target - total) / max(lam, 1e-3))))
        for length in draws.tolist():
            lengths.append(min(length, target - total))
            total += lengths[-1]
            if total >= target:
                break
    return np.asarray(lengths, dtype=np.int64)


def infill_spans(ids: np.ndarray, ratio: float, lam: float, mask_id: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corrupted ids, span starts, span lengths): each span -> one <mask>.

    The kept tokens are cut at random into k + 1 runs around the k spans; runs between two
    spans have at least one token, so each <mask> of the output stands for exactly one span
    (two spans meeting would read as one). Spans that find no room are dropped, lengths and all.
    """
    n = len(ids)
    lengths = span_lengths(n, ratio, lam, rng)
    kept = n - int(lengths.sum())
    while len(lengths) > 1 and len(lengths) - 1 > kept:  # not enough kept tokens to separate them
        kept += int(lengths[-1])
        lengths = lengths[:-1]
    if len(lengths) == 0:
        return ids.copy(), np.zeros(0, np.int64), lengths
    k = len(lengths)
    # gaps g_0..g_k >= 0 with g_1..g_{k-1} >= 1: a uniform composition of kept - (k - 1)
    free = kept - (k - 1)
    cuts = np.sort(rng.choice(free + k, size=k, replace=False))
    gaps = np.diff(np.concatenate([[-1], cuts, [free + k]])) - 1  # (k + 1,) >= 0, sum = free
    gaps[1:-1] += 1
    out, starts, pos = [], [], 0
    for i in range(k):
        out.append(ids[pos: pos + gaps[i]])
        pos += int(gaps[i])
        starts.append(pos)
        out.append(np.asarray([mask_id], dtype=ids.dtype))
        pos += int(lengths[i])
    out.append(ids[pos:])
    return np.concatenate(out), np.asarray(starts, dtype=np.int64), lengths


def rotate(ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The document begins at a uniformly chosen token (section 2.2, document rotation)."""
    return np.roll(ids, -int(rng.integers(len(ids)))) if len(ids) else ids


# --- options ---------------------------------------------------------------------------------
@dataclass
class BartOptions(ObjectiveOptions):
    noise: str = option("infilling,permutation", str,
                        f"BART: comma-separated noising functions ({', '.join(NOISES)})", metavar="LIST")
    mask_ratio: float = option(0.3, float, "BART: share of tokens masked, deleted or infilled", low=0, high=1,
                               open_high=True, metavar="P")
    poisson_lambda: float = option(3.0, float, "BART text infilling: mean span length", low=0, open_low=True,
                                   metavar="L")
    truncate: bool = option(False, bool, "cut a text too long for one example instead of refusing it")

    def __post_init__(self) -> None:
        unknown = [n for n in self.kinds if n not in NOISES]
        if unknown or not self.kinds:
            raise PlmlabError(f"objective bart: noise must be a comma-separated list of {', '.join(NOISES)}, "
                              f"got {self.noise!r}")

    @property
    def kinds(self) -> list[str]:
        return [n.strip() for n in self.noise.split(",") if n.strip()]


# --- the objective ---------------------------------------------------------------------------
class BartDenoising(Objective):
    """Encoder input = the noised document, labels = the original (the model shifts them right
    from the decoder start token, </s>); `seq_len` bounds the original's length."""

    name = "bart"
    tokenizer_style = "bart"
    Options = BartOptions
    # the <mask> of infilling and masking: the bart (mask last, as fairseq) and roberta styles have it,
    # T5's SentencePiece has not
    fits = Fits(arch="encoder-decoder", head="lm", tokenizers=("bart", "roberta"))

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        self.mask_id = tokenizer.mask_id
        self.kinds = set(self.opts.kinds)
        if self.kinds & {"masking", "infilling"} and self.mask_id is None:
            raise PlmlabError("BART masking and text infilling need a tokenizer with a mask token (<mask>); "
                              "train one with style bart")
        self.template = Template.from_tokenizer(tokenizer)
        self.max_tokens = seq_len - self.template.single_overhead
        if self.max_tokens < 2:
            raise PlmlabError(f"seq_len {seq_len} leaves no room for text next to the special tokens")
        self._plans: dict[int, tuple[object, list]] = {}

    # -- corpus -> examples: whole sentences of one document, up to max_tokens ----------------
    def plan(self, data) -> list[list[tuple[int, int]]]:
        cached = self._plans.get(id(data))
        if cached is None or cached[0] is not data:
            cached = (data, self._build_plan(data))
            self._plans[id(data)] = cached
        return cached[1]

    def _build_plan(self, data) -> list[list[tuple[int, int]]]:
        """Each example: the token ranges [start, end) of its sentences."""
        examples, offsets = [], data.sent_offsets
        for d in range(data.n_docs):
            current, used = [], 0
            for s in range(int(data.doc_sents[d]), int(data.doc_sents[d + 1])):
                for start in range(int(offsets[s]), int(offsets[s + 1]), self.max_tokens):
                    end = min(start + self.max_tokens, int(offsets[s + 1]))
                    if current and used + end - start > self.max_tokens:
                        examples.append(current)
                        current, used = [], 0
                    current.append((start, end))
                    used += end - start
            if current:
                examples.append(current)
        return examples

    def num_examples(self, data) -> int:
        return len(self.plan(data))

    def example(self, data, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.noise([np.asarray(data.tokens[s:e], dtype=np.int64) for s, e in self.plan(data)[index]], rng)

    def from_ids(self, ids, rng, ids_b=None) -> dict[str, np.ndarray]:
        ids = list(ids) + list(ids_b or [])
        if len(ids) > self.max_tokens:
            if not self.opts.truncate:
                raise PlmlabError(f"the text has {len(ids)} tokens; with seq_len {self.seq_len} BART takes at most "
                                  f"{self.max_tokens} (raise --seq-len, or --set truncate=true)")
            ids = ids[: self.max_tokens]
        return self.noise(self.sentences_of(ids), rng)

    def sentences_of(self, ids: list[int]) -> list[np.ndarray]:
        """The text's sentences as token runs: data/sentences.py's split of the decoded text,
        mapped back to the first token whose decoded prefix reaches each sentence's end."""
        text = self.tokenizer.decode(ids)
        ends, pos = [], 0
        for sentence in split_sentences(text):
            found = text.find(sentence, pos)
            pos = (found if found >= 0 else pos) + len(sentence)
            ends.append(pos)
        prefix = [len(self.tokenizer.decode(ids[:k])) for k in range(1, len(ids) + 1)]
        cuts = sorted({min(int(np.searchsorted(prefix, e)) + 1, len(ids)) for e in ends[:-1]} - {len(ids)})
        return [np.asarray(p, dtype=np.int64) for p in np.split(np.asarray(ids, dtype=np.int64), cuts) if len(p)]

    # -- the noise ------------------------------------------------------------------------------
    def noise(self, sentences: list[np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        o = self.opts
        original = np.concatenate(sentences)
        if "permutation" in self.kinds:
            sentences = permute_sentences(sentences, rng)
        ids = np.concatenate(sentences)
        if "masking" in self.kinds:
            ids = mask_tokens(ids, o.mask_ratio, self.mask_id, rng)
        if "deletion" in self.kinds:
            ids = delete_tokens(ids, o.mask_ratio, rng)
        if "infilling" in self.kinds:
            ids = infill_spans(ids, o.mask_ratio, o.poisson_lambda, self.mask_id, rng)[0]
        if "rotation" in self.kinds:
            ids = rotate(ids, rng)
        inputs = self.template.wrap([ids])["input_ids"]
        return {"input_ids": inputs, "attention_mask": np.ones_like(inputs),
                "labels": self.template.wrap([original])["input_ids"]}

    def describe(self, example: dict) -> dict:
        target = [int(t) for t in example["labels"]]
        return {"target_tokens": self.tokenizer.convert_ids_to_tokens(target), "noise": self.opts.kinds,
                "mask_ratio": self.opts.mask_ratio, "poisson_lambda": self.opts.poisson_lambda,
                "position_ids": list(range(len(example["input_ids"])))}


OBJECTIVES = {"bart": BartDenoising}
