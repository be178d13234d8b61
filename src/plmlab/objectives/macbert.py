"""MacBERT's "MLM as correction" (Cui et al. 2020, section 3.3): similar words instead of [MASK].

Selection: whole words, as n-grams of 1-4 words with p(n) = 40/30/20/10 %, until 15 % of the
words are selected (the `Masker` does it with `MACBERT_NGRAM_P` and a budget counted in words).
Replacement, decided once per selected word: 80 % a similar word, 10 % a random word, 10 %
kept; "if an N-gram is selected to mask, we will find similar words individually", and where no
similar word exists, a random word. No [MASK] token is ever put into the input: the
pretraining / fine-tuning discrepancy is what the paper removes.

Where the similar words come from:

  --similar-words FILE  an embedding space the user supplies, as a plain-text vectors file
                        (word2vec / GloVe text format: an optional "COUNT DIM" header line,
                        then one "WORD V1 V2 ... VD" line per word). A word's similar words
                        are its `similar_top_k` nearest neighbours by cosine among the file's
                        words; one of those that tokenizes to as many pieces as the word
                        replaces it (a label per piece must stay aligned), else a random word.
  (none)                the input embeddings of the model being trained (`attach_model`):
                        each piece of the word is replaced by one of its nearest pieces by
                        cosine, among pieces of the same kind (word-initial or continuation,
                        so word boundaries survive). Computed at the first example after the
                        model is attached and again every `similar_refresh` examples.
                        With neither (e.g. `plmlab objective` without a file), every
                        similar-word choice falls back to a random word.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import PlmlabError
from .masking import UnitMasker

MACBERT_NGRAM_P = np.array([0.4, 0.3, 0.2, 0.1])  # section 3.3: 1- to 4-gram shares


def read_vectors(path: str) -> tuple[list[str], np.ndarray]:
    """(words, unit vectors [N, D]) of a plain-text vectors file; one-line errors otherwise."""
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise PlmlabError(f"cannot read the similar-words file {path}: {getattr(e, 'strerror', None) or e}") from None
    rows = [line.split() for line in lines if line.strip()]
    if rows and len(rows[0]) == 2 and all(t.isdigit() for t in rows[0]):
        rows = rows[1:]  # the word2vec "COUNT DIM" header
    if not rows:
        raise PlmlabError(f"{path}: no vectors (expected lines 'WORD V1 V2 ... VD')")
    dim = len(rows[0]) - 1
    for i, row in enumerate(rows):
        if len(row) - 1 != dim or dim < 1:
            raise PlmlabError(f"{path}: line {i + 1} has {len(row) - 1} numbers, expected {dim} "
                              "(lines 'WORD V1 V2 ... VD')")
    try:
        vectors = np.array([[float(v) for v in row[1:]] for row in rows], dtype=np.float32)  # (N, D)
    except ValueError as e:
        raise PlmlabError(f"{path}: not a vectors file ({e})") from None
    if not np.isfinite(vectors).all():
        raise PlmlabError(f"{path}: the vectors hold nan or inf")
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)  # (N, 1)
    return [row[0] for row in rows], vectors / np.maximum(norms, 1e-12)


def nearest(unit: torch.Tensor, k: int, group: torch.Tensor | None = None, ok: torch.Tensor | None = None,
            chunk: int = 2048) -> np.ndarray:
    """[N, k] indices of each row's k most cosine-similar rows (itself excluded), only among rows
    of its own `group` [N] and rows that are `ok` [N]; -1 where fewer exist. `unit`: unit rows [N, D].
    Chunked, so a 30k vocabulary never holds an N x N matrix."""
    N = unit.shape[0]
    out = np.full((N, k), -1, dtype=np.int64)
    k_eff = min(k, N - 1)
    if k_eff <= 0:
        return out
    for s in range(0, N, chunk):
        sims = unit[s : s + chunk] @ unit.T  # (c, N)
        rows = torch.arange(s, min(s + chunk, N))
        sims[torch.arange(len(rows)), rows] = -torch.inf  # never the word itself
        if group is not None:
            sims = sims.masked_fill(group[rows, None] != group[None, :], -torch.inf)  # (c, N)
        if ok is not None:
            sims = sims.masked_fill(~ok[None, :], -torch.inf)
        vals, idx = sims.topk(k_eff, dim=1)  # (c, k)
        idx[torch.isinf(vals)] = -1
        out[s : s + len(rows), :k_eff] = idx.numpy()
    return out


class FileNeighbours:
    """Similar words from a user's vectors file, keyed by the word's token ids."""

    def __init__(self, path: str, tokenizer, k: int) -> None:
        words, unit = read_vectors(path)
        near = nearest(torch.from_numpy(unit), k)  # (N, k)
        # " " + word: the word-initial form in context (a byte-level BPE "Ġ" piece, a WordPiece head)
        pieces = [tuple(tokenizer.encode(" " + w, add_special_tokens=False)) for w in words]
        self.table: dict[tuple[int, ...], list[tuple[int, ...]]] = {}
        for word, row in zip(pieces, near):
            same_length = [pieces[j] for j in row if j >= 0 and len(pieces[j]) == len(word) and pieces[j] != word]
            if word and same_length:
                self.table.setdefault(word, same_length)
        # (piece, piece at the same place of a similar word): how `plmlab objective` tells similar from random
        self.pairs = {(a, b) for word, options in self.table.items() for o in options for a, b in zip(word, o)}

    def is_similar(self, original: int, now: int) -> bool:
        return (original, now) in self.pairs

    def tick(self) -> None:
        """A file's neighbours never change."""

    def replace(self, word: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        """A similar word's ids for the word's ids, or None when it has none."""
        options = self.table.get(tuple(int(i) for i in word))
        return None if not options else np.asarray(options[int(rng.integers(len(options)))], dtype=np.int64)


class EmbeddingNeighbours:
    """Similar pieces from the model's input embeddings, recomputed every `refresh` examples."""

    def __init__(self, word_start: np.ndarray, special: np.ndarray, k: int, refresh: int) -> None:
        self.word_start, self.special, self.k, self.refresh = word_start, special, k, refresh
        self.weight: torch.Tensor | None = None  # the model's token embedding, read live
        self.table: np.ndarray | None = None  # [V, k] nearest pieces, -1 = none
        self.since = 0  # examples since the table was computed

    def attach(self, weight: torch.Tensor) -> None:
        self.weight, self.table, self.since = weight, None, 0

    def _refresh(self) -> None:
        with torch.no_grad():
            w = self.weight.detach().float().cpu()  # (V, E)
            unit = w / w.norm(dim=1, keepdim=True).clamp_min(1e-12)
        V, n = unit.shape[0], len(self.word_start)  # a model's table may have rows past the tokenizer's
        start = torch.from_numpy(np.pad(self.word_start[:V], (0, max(0, V - n))))  # (V,) word-initial or not
        ids = np.arange(V)
        ok = torch.from_numpy((ids < n) & ~np.isin(ids, self.special))  # (V,) real, never special tokens
        self.table, self.since = nearest(unit, self.k, start, ok), 0

    def replace(self, word: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
        if self.weight is None:
            return None
        if self.table is None or (self.refresh and self.since >= self.refresh):
            self._refresh()
        rows = self.table[word]  # (m, k) candidates per piece
        counts = (rows >= 0).sum(axis=1)  # (m,)
        if (counts == 0).any():
            return None
        picks = rng.integers(0, counts)  # (m,) one neighbour per piece
        return rows[np.arange(len(word)), picks]

    def tick(self) -> None:
        self.since += 1

    def is_similar(self, original: int, now: int) -> bool:
        return self.table is not None and now in self.table[original]


class MacbertMasker(UnitMasker):
    """Whole-word n-grams (40/30/20/10 %) over 15 % of the words; per word: similar / random / kept."""

    per_unit_budget = True  # "we mask 15 % of the input words"

    def __init__(self, tokenizer, options) -> None:
        super().__init__(tokenizer, options)
        self.ngram_p = MACBERT_NGRAM_P
        if options.similar_words:
            self.neighbours = FileNeighbours(options.similar_words, tokenizer, options.similar_top_k)
        else:
            self.neighbours = EmbeddingNeighbours(self.word_start, self.special, options.similar_top_k,
                                                  options.similar_refresh)
        self.source = "file" if options.similar_words else "model embeddings"

    def attach_model(self, model) -> None:
        if isinstance(self.neighbours, EmbeddingNeighbours):
            self.neighbours.attach(model.embed.tokens.weight)

    def replace(self, inputs, units, how, rng) -> np.ndarray:
        """0 = a similar word (a random one where none exists: then 1), 1 = random, 2 = kept."""
        applied = how.copy()
        for u, (s, e) in enumerate(units):
            if how[u] == 0:
                similar = self.neighbours.replace(inputs[s:e], rng)
                if similar is not None:
                    inputs[s:e] = similar
                    continue
                applied[u] = 1  # no similar word: the paper's fallback
            if applied[u] == 1:
                inputs[s:e] = rng.choice(self.random_pool, size=e - s)
        self.neighbours.tick()
        return applied

    def kind(self, original: int, now: int) -> str:
        if now == original:
            return "unchanged"
        return "similar" if self.neighbours.is_similar(original, now) else "random"

    def view(self, ids: np.ndarray) -> dict:
        attached = not isinstance(self.neighbours, EmbeddingNeighbours) or self.neighbours.weight is not None
        return {"masking": "macbert", "similar_source": self.source if attached else
                "none (no --similar-words file and no model): similar words fall back to random words"}
