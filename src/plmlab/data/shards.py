"""Tokenized corpora as memory-mapped arrays with a document and a sentence index, cached on disk.

One split on disk (a folder ``train/`` or ``val/``)::

    tokens.bin        raw uint16 (vocab <= 65536) or uint32 token ids, all documents back to back
    doc_offsets.npy   int64 [n_docs + 1]   doc d  = tokens[doc_offsets[d] : doc_offsets[d + 1]]
    sent_offsets.npy  int64 [n_sents + 1]  sent i = tokens[sent_offsets[i] : sent_offsets[i + 1]]
    doc_sents.npy     int64 [n_docs + 1]   doc d holds sentences doc_sents[d] .. doc_sents[d + 1] - 1
    doc_index.npy     int64 [n_docs]       doc d is documents[doc_index[d]] of the input corpus

Every document boundary is also a sentence boundary. Sentences are tokenized *without* special
tokens (objectives add them), and every sentence after the first of its document is encoded
with a leading space: concatenating a document's sentence tokens then gives the tokens of the
sentences joined by spaces, which is what byte-level BPE needs to keep word boundaries
(``"ĠWorld"``, not ``"World"``); WordPiece and SentencePiece-style pre-tokenizers ignore it.

The split into train and validation is by *document* (a seeded permutation picks the validation
documents), so no document leaks across. The cache key hashes the corpus content, the
tokenizer's JSON, ``val_fraction``, ``seed`` and ``FORMAT_VERSION``; a build writes into a
temporary folder renamed into place at the end, so a killed run never leaves a half cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from plmlab.errors import PlmlabError

FORMAT_VERSION = 1
CHUNK_SENTENCES = 20_000  # sentences per encode_batch call: bounds memory on big corpora
SPLITS = ("train", "val")
_INDEX_ARRAYS = ("doc_offsets", "sent_offsets", "doc_sents", "doc_index")


class _Encoder(Protocol):  # what build_token_data needs from plmlab.tokenizers.Tokenizer
    vocab_size: int

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]: ...

    def fingerprint(self) -> str: ...


@dataclass
class TokenData:
    """One split of a tokenized corpus (arrays are read-only memory maps when loaded)."""

    tokens: np.ndarray  # [n_tokens] uint16 or uint32
    doc_offsets: np.ndarray  # int64 [n_docs + 1]
    sent_offsets: np.ndarray  # int64 [n_sents + 1]
    doc_sents: np.ndarray  # int64 [n_docs + 1]
    doc_index: np.ndarray  # int64 [n_docs]: position of each document in the input corpus

    @property
    def n_docs(self) -> int:
        return len(self.doc_offsets) - 1

    @property
    def n_sents(self) -> int:
        return len(self.sent_offsets) - 1

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)

    def document(self, d: int) -> np.ndarray:
        """Token ids of document ``d`` (a view, no copy)."""
        return self.tokens[self.doc_offsets[d] : self.doc_offsets[d + 1]]

    def sentences(self, d: int) -> list[np.ndarray]:
        """Token ids of each sentence of document ``d`` (views)."""
        bounds = self.sent_offsets[self.doc_sents[d] : self.doc_sents[d + 1] + 1]
        return [self.tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def corpus_fingerprint(documents: list[list[str]]) -> str:
    """sha256 of the corpus content and its document/sentence structure."""
    h = hashlib.sha256()
    for doc in documents:
        for sentence in doc:
            h.update(sentence.encode("utf-8", "surrogatepass") + b"\x1f")
        h.update(b"\x1e")
    return h.hexdigest()


def build_token_data(
    documents: list[list[str]],
    tokenizer: _Encoder,
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
) -> tuple[TokenData, TokenData]:
    """Tokenize ``documents`` into (train, val) :class:`TokenData`, or load them from the cache.

    ``cache_dir`` defaults to ``plmlab.data.cache_dir() / "shards"``. ``val_fraction`` of the
    documents (at least one when it is > 0) go to validation; 0 gives an empty validation split.
    """
    if not 0 <= val_fraction < 1:
        raise PlmlabError(f"val_fraction must be in [0, 1), not {val_fraction}")
    documents = [[s for s in doc if s.strip()] for doc in documents]
    key = _cache_key(documents, tokenizer, val_fraction, seed)
    root = Path(cache_dir) if cache_dir is not None else _default_root()
    final = root / key
    if (final / "meta.json").is_file():
        try:
            return _load(final)
        except (OSError, ValueError, KeyError):
            shutil.rmtree(final, ignore_errors=True)  # a damaged cache entry: rebuild it
    kept = [i for i, doc in enumerate(documents) if doc]  # blank documents are skipped
    is_val = dict(zip(kept, split_documents(len(kept), val_fraction, seed)))
    tmp = root / f".{key}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        _write(tmp, documents, is_val, tokenizer)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same build first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return _load(final)


def split_documents(n_docs: int, val_fraction: float, seed: int) -> np.ndarray:
    """Boolean mask [n_docs]: True for validation documents (a seeded random choice)."""
    n_val = max(1, round(n_docs * val_fraction)) if val_fraction > 0 else 0
    if n_docs - n_val < 1:
        raise PlmlabError(
            f"the corpus has {n_docs} document(s): too few for a train/validation split "
            "(add text, or separate documents with blank lines)"
        )
    is_val = np.zeros(n_docs, dtype=bool)
    is_val[np.random.default_rng(seed).permutation(n_docs)[:n_val]] = True
    return is_val


def _default_root() -> Path:
    from plmlab.data import cache_dir  # late import: plmlab.data imports this module

    return cache_dir() / "shards"


def _cache_key(documents, tokenizer, val_fraction: float, seed: int) -> str:
    parts = {
        "format": FORMAT_VERSION,
        "corpus": corpus_fingerprint(documents),
        "tokenizer": tokenizer.fingerprint(),
        "val_fraction": val_fraction,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


class _SplitWriter:
    """Appends documents to one split's files, keeping the offsets in memory (8 bytes/sentence)."""

    def __init__(self, folder: Path, dtype: np.dtype):
        folder.mkdir()
        self.folder, self.dtype = folder, dtype
        self.file = open(folder / "tokens.bin", "wb")
        self.doc_offsets, self.sent_offsets, self.doc_sents, self.doc_index = [0], [0], [0], []

    def add(self, index: int, sentences: list[list[int]]) -> None:
        lengths = [len(ids) for ids in sentences if ids]
        if not lengths:
            return  # nothing survived tokenization (should not happen for non-blank text)
        ids = np.fromiter((t for s in sentences for t in s), dtype=self.dtype, count=sum(lengths))
        self.file.write(ids.tobytes())
        self.sent_offsets += (self.sent_offsets[-1] + np.cumsum(lengths)).tolist()
        self.doc_offsets.append(self.sent_offsets[-1])
        self.doc_sents.append(len(self.sent_offsets) - 1)
        self.doc_index.append(index)

    def close(self) -> dict:
        self.file.close()
        for name in _INDEX_ARRAYS:
            np.save(self.folder / f"{name}.npy", np.asarray(getattr(self, name), dtype=np.int64))
        return {"n_docs": len(self.doc_offsets) - 1, "n_sents": len(self.sent_offsets) - 1,
                "n_tokens": self.doc_offsets[-1]}


def _write(folder: Path, documents, is_val: dict[int, bool], tokenizer: _Encoder) -> None:
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32)
    writers = {name: _SplitWriter(folder / name, dtype) for name in SPLITS}
    for start, stop in _chunks(documents):
        texts = [s if i == 0 else " " + s for doc in documents[start:stop] for i, s in enumerate(doc)]
        encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
        pos = 0
        for d in range(start, stop):
            n = len(documents[d])
            if n:
                writers["val" if is_val[d] else "train"].add(d, encoded[pos : pos + n])
            pos += n
    meta = {"format": FORMAT_VERSION, "dtype": dtype.name,
            "splits": {name: w.close() for name, w in writers.items()}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=1))


def _chunks(documents) -> list[tuple[int, int]]:
    """Document ranges of about CHUNK_SENTENCES sentences each."""
    ranges, start, count = [], 0, 0
    for d, doc in enumerate(documents):
        count += len(doc)
        if count >= CHUNK_SENTENCES:
            ranges.append((start, d + 1))
            start, count = d + 1, 0
    if start < len(documents):
        ranges.append((start, len(documents)))
    return ranges


def _load(folder: Path) -> tuple[TokenData, TokenData]:
    meta = json.loads((folder / "meta.json").read_text())
    if meta["format"] != FORMAT_VERSION:
        raise ValueError("cache format changed")
    dtype = np.dtype(meta["dtype"])
    return tuple(_load_split(folder / name, dtype, meta["splits"][name]) for name in SPLITS)


def _load_split(folder: Path, dtype: np.dtype, counts: dict) -> TokenData:
    n = counts["n_tokens"]
    # np.memmap cannot map an empty file: an empty split (val_fraction=0) gets a plain array.
    path = folder / "tokens.bin"
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    offsets = {name: np.load(folder / f"{name}.npy") for name in _INDEX_ARRAYS}  # small: read in full
    if offsets["doc_offsets"][-1] != n or len(offsets["doc_offsets"]) != counts["n_docs"] + 1:
        raise ValueError("cache entry is inconsistent")
    return TokenData(tokens=tokens, **offsets)
