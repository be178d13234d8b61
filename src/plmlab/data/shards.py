"""Tokenized corpora as memory-mapped arrays with a document and a sentence index, cached on disk.

One split on disk (a folder ``train/`` or ``val/``)::

    tokens.bin        raw uint16 (vocab <= 65536) or uint32 token ids, all documents back to back
    doc_offsets.npy   int64 [n_docs + 1]   doc d  = tokens[doc_offsets[d] : doc_offsets[d + 1]]
    sent_offsets.npy  int64 [n_sents + 1]  sent i = tokens[sent_offsets[i] : sent_offsets[i + 1]]
    doc_sents.npy     int64 [n_docs + 1]   doc d holds sentences doc_sents[d] .. doc_sents[d + 1] - 1
    doc_index.npy     int64 [n_docs]       doc d is documents[doc_index[d]] of the input corpus
    doc_langs.npy     int64 [n_docs]       doc d is in language meta["languages"][doc_langs[d]]
                                           (only for a corpus that names languages, data/languages.py)

Every document boundary is also a sentence boundary. Sentences are tokenized *without* special
tokens (objectives add them), and every sentence after the first of its document is encoded
with a leading space: concatenating a document's sentence tokens then gives the tokens of the
sentences joined by spaces, which is what byte-level BPE needs to keep word boundaries
(``"ĠWorld"``, not ``"World"``); WordPiece and SentencePiece-style pre-tokenizers ignore it.

The split into train and validation is by *document* (a seeded permutation picks the validation
documents), so no document leaks across. The cache key hashes the corpus content, the
tokenizer's JSON, ``val_fraction``, ``seed``, ``FORMAT_VERSION`` and the documents' languages
(where the corpus names any: a relabelled corpus is another entry); a build writes into a
temporary folder, ``fsync``s every file and renames the folder into place at the end, so a killed
run or a full disk never leaves a half cache entry (a full disk is one ``PlmlabError`` line).

A cache entry is checked before it is trusted: real files and folders only (no symlink or hard
link can make it read outside the cache), sizes and offsets consistent, every token id below the
tokenizer's vocabulary size, every document index within the corpus. One that fails is removed
and rebuilt, with a warning.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from plmlab.data.files import (CorruptCache, cache_dir, fsync_folder, is_plain_folder, open_regular, remove_entry,
                               write_error, write_synced)
from plmlab.errors import PlmlabError, warn

FORMAT_VERSION = 1
CHUNK_SENTENCES = 20_000  # sentences per encode_batch call: bounds memory on big corpora
CHUNK_CHARS = 1_000_000  # ... and characters: bounds it whatever the sentences' lengths
SPLITS = ("train", "val")
_INDEX_ARRAYS = ("doc_offsets", "sent_offsets", "doc_sents", "doc_index")
_LANGS = "doc_langs"


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
    # XLM: the corpus's language names (sorted) and each document's index into them; () / None
    # for a corpus that names no languages
    languages: tuple[str, ...] = ()
    doc_languages: np.ndarray | None = None  # int64 [n_docs]

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

    def document_of(self, positions: np.ndarray) -> np.ndarray:
        """The document holding each token position (int64, the shape of `positions`)."""
        return np.searchsorted(self.doc_offsets, positions, side="right") - 1

    def sentences(self, d: int) -> list[np.ndarray]:
        """Token ids of each sentence of document ``d`` (views)."""
        bounds = self.sent_offsets[self.doc_sents[d] : self.doc_sents[d + 1] + 1]
        return [self.tokens[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def corpus_fingerprint(documents: list[list[str]], languages: list[str] | None = None) -> str:
    """sha256 of the corpus content and its document/sentence structure (and of each document's
    language, where the corpus names them: the same text relabelled is another corpus)."""
    h = hashlib.sha256()
    for doc in documents:
        for sentence in doc:
            h.update(sentence.encode("utf-8", "surrogatepass") + b"\x1f")
        h.update(b"\x1e")
    if languages is not None:
        if len(languages) != len(documents):
            raise ValueError(f"{len(languages)} languages for {len(documents)} documents")
        h.update(b"\x1d" + "\x1f".join(languages).encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def build_token_data(
    documents: list[list[str]],
    tokenizer: _Encoder,
    cache_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.05,
    seed: int = 0,
    languages: list[str] | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[TokenData, TokenData]:
    """Tokenize ``documents`` into (train, val) :class:`TokenData`, or load them from the cache.

    ``cache_dir`` defaults to ``plmlab.data.cache_dir() / "shards"``. ``val_fraction`` of the
    documents (at least one when it is > 0) go to validation; 0 gives an empty validation split.
    ``languages``: each document's language (``read_corpus_with_languages``), kept per document.
    ``say`` gets a status line before the documents are tokenized.
    """
    if not 0 <= val_fraction < 1:
        raise PlmlabError(f"val_fraction must be in [0, 1), not {val_fraction}")
    if languages is not None and len(languages) != len(documents):
        raise ValueError(f"{len(languages)} languages for {len(documents)} documents")
    documents = [[s for s in doc if s.strip()] for doc in documents]
    key = _cache_key(documents, tokenizer, val_fraction, seed, languages)
    root = Path(cache_dir) if cache_dir is not None else _default_root()
    final = root / key
    names = tuple(sorted(set(languages))) if languages is not None else ()
    checks = (tokenizer.vocab_size, len(documents), names)
    if os.path.lexists(final):
        try:
            return _load(final, *checks)
        except (CorruptCache, OSError, ValueError, KeyError, TypeError, RecursionError) as e:
            warn(f"token cache {final} is damaged ({_reason(e)}); rebuilding it")
            remove_entry(final)
    kept = [i for i, doc in enumerate(documents) if doc]  # blank documents are skipped
    is_val = dict(zip(kept, split_documents(len(kept), val_fraction, seed)))
    doc_langs = np.array([names.index(x) for x in languages], dtype=np.int64) if languages is not None else None
    if say is not None:
        say(f"data: tokenizing {len(kept):,} documents into token shards (once: they are cached for later runs)")
    _build(root, final, documents, is_val, tokenizer, (names, doc_langs))
    return _load(final, *checks)


def _build(root: Path, final: Path, documents, is_val: dict[int, bool], tokenizer: _Encoder,
           languages: tuple[tuple[str, ...], np.ndarray | None]) -> None:
    """Write the entry under a temporary name, then rename it to ``final`` (see the module docstring)."""
    tmp = root / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
        _write(tmp, documents, is_val, tokenizer, languages)
        try:
            os.rename(tmp, final)
        except OSError:  # another process finished the same build first: use theirs
            remove_entry(tmp)
        fsync_folder(root)
    except OSError as e:  # a full disk, `ulimit -f`, a read-only cache folder
        remove_entry(tmp)
        raise write_error(e, "the token cache", root) from None
    except BaseException:
        remove_entry(tmp)
        raise


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):
        return f"{error.strerror or error}: {Path(error.filename).name}" if error.filename else str(error)
    return str(error) or type(error).__name__


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
    return cache_dir() / "shards"


def _cache_key(documents, tokenizer, val_fraction: float, seed: int, languages: list[str] | None = None) -> str:
    parts = {
        "format": FORMAT_VERSION,
        "corpus": corpus_fingerprint(documents, languages),  # without languages: the key of earlier entries
        "tokenizer": tokenizer.fingerprint(),
        "val_fraction": val_fraction,
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


class _SplitWriter:
    """Appends documents to one split's files, keeping the offsets in memory (8 bytes/sentence).
    A long document may arrive in several parts; ``last`` closes it."""

    def __init__(self, folder: Path, dtype: np.dtype):
        folder.mkdir()
        self.folder, self.dtype = folder, dtype
        self.file = open(folder / "tokens.bin", "wb")
        self.doc_offsets, self.sent_offsets, self.doc_sents, self.doc_index = [0], [0], [0], []

    def add(self, index: int, sentences: list[list[int]], last: bool = True) -> None:
        lengths = [len(ids) for ids in sentences if ids]  # a sentence may tokenize to nothing
        if lengths:
            ids = np.fromiter((t for s in sentences for t in s), dtype=self.dtype, count=sum(lengths))
            self.file.write(ids.tobytes())
            self.sent_offsets += (self.sent_offsets[-1] + np.cumsum(lengths)).tolist()
        if last and len(self.sent_offsets) - 1 > self.doc_sents[-1]:  # a document with no token is skipped
            self.doc_offsets.append(self.sent_offsets[-1])
            self.doc_sents.append(len(self.sent_offsets) - 1)
            self.doc_index.append(index)

    def close(self, doc_langs: np.ndarray | None = None) -> dict:
        """Write the index arrays (and, given each corpus document's language id, doc_langs.npy)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        arrays = {name: np.asarray(getattr(self, name), dtype=np.int64) for name in _INDEX_ARRAYS}
        if doc_langs is not None:
            arrays[_LANGS] = doc_langs[arrays["doc_index"]]  # (n_docs,) each kept document's language
        for name, array in arrays.items():
            write_synced(self.folder / f"{name}.npy", lambda f, a=array: np.save(f, a))
        return {"n_docs": len(self.doc_offsets) - 1, "n_sents": len(self.sent_offsets) - 1,
                "n_tokens": self.doc_offsets[-1]}


def _write(folder: Path, documents, is_val: dict[int, bool], tokenizer: _Encoder,
           languages: tuple[tuple[str, ...], np.ndarray | None]) -> None:
    dtype = np.dtype(np.uint16 if tokenizer.vocab_size <= 2**16 else np.uint32)
    writers = {name: _SplitWriter(folder / name, dtype) for name in SPLITS}
    try:
        for batch in _batches(documents):
            texts = [s if i == 0 else " " + s for d, a, b in batch for i, s in enumerate(documents[d][a:b], a)]
            encoded = tokenizer.encode_batch(texts, add_special_tokens=False)
            pos = 0
            for d, a, b in batch:
                writers["val" if is_val[d] else "train"].add(d, encoded[pos : pos + b - a], last=b == len(documents[d]))
                pos += b - a
        names, doc_langs = languages
        meta = {"format": FORMAT_VERSION, "dtype": dtype.name,
                "splits": {name: w.close(doc_langs) for name, w in writers.items()}}
        if doc_langs is not None:
            meta["languages"] = list(names)
    finally:
        for w in writers.values():
            w.file.close()  # a no-op after close(); frees the descriptor when a write failed
    write_synced(folder / "meta.json", lambda f: f.write(json.dumps(meta, indent=1).encode()))
    for name in SPLITS:
        fsync_folder(folder / name)
    fsync_folder(folder)


def _batches(documents) -> Iterator[list[tuple[int, int, int]]]:
    """Sentence ranges (document, start, stop) in batches of about CHUNK_SENTENCES sentences or
    CHUNK_CHARS characters, whichever comes first: HF keeps ~100 bytes per token of a batch, so
    a batch bounded by sentences alone (of 20 000-character sentences) could take gigabytes."""
    batch, count, chars = [], 0, 0
    for d, doc in enumerate(documents):
        start = 0
        for i, sentence in enumerate(doc):
            count, chars = count + 1, chars + len(sentence)
            if count >= CHUNK_SENTENCES or chars >= CHUNK_CHARS:
                yield batch + [(d, start, i + 1)]
                batch, count, chars, start = [], 0, 0, i + 1
        if start < len(doc):
            batch.append((d, start, len(doc)))
    if batch:
        yield batch


def _load(folder: Path, vocab_size: int, n_documents: int, languages: tuple[str, ...]) -> tuple[TokenData, TokenData]:
    """Both splits of a cache entry, checked (see the module docstring): `CorruptCache` if not."""
    if not is_plain_folder(folder):
        raise CorruptCache("not a folder")
    with open_regular(folder / "meta.json", follow_symlinks=False) as f:
        meta = json.loads(f.read().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise CorruptCache("cache format changed")
    if meta.get("dtype") not in ("uint16", "uint32") or not isinstance(meta.get("splits"), dict):
        raise CorruptCache("meta.json is malformed")
    if tuple(meta.get("languages", ())) != languages:
        raise CorruptCache("its languages are not the corpus's")
    dtype = np.dtype(meta["dtype"])
    splits = tuple(_load_split(folder / name, dtype, meta["splits"][name], vocab_size, n_documents, languages)
                   for name in SPLITS)
    indices = np.concatenate([data.doc_index for data in splits])
    if len(np.unique(indices)) != len(indices):
        raise CorruptCache("a document is in both splits")
    return splits


def _load_split(folder: Path, dtype: np.dtype, counts, vocab_size: int, n_documents: int,
                languages: tuple[str, ...]) -> TokenData:
    if not is_plain_folder(folder):
        raise CorruptCache(f"{folder.name}/ is not a folder")
    n = _count(counts, "n_tokens")
    with open_regular(folder / "tokens.bin", follow_symlinks=False) as f:
        if os.fstat(f.fileno()).st_size != n * dtype.itemsize:
            raise CorruptCache(f"{folder.name}/tokens.bin does not hold {n} tokens")
        # np.memmap cannot map an empty file: an empty split (val_fraction=0) gets a plain array.
        tokens = np.memmap(f, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
    arrays = {}
    for name in _INDEX_ARRAYS:  # small: read in full
        with open_regular(folder / f"{name}.npy", follow_symlinks=False) as f:
            arrays[name] = np.load(f, allow_pickle=False)
    data = TokenData(tokens=tokens, **arrays)
    _check_split(data, _count(counts, "n_docs"), _count(counts, "n_sents"), n_documents)
    if languages:
        data.languages, data.doc_languages = languages, _load_languages(folder, data.n_docs, len(languages))
    if n and int(tokens.max()) >= vocab_size:  # never train on ids the embedding table lacks
        raise CorruptCache(f"{folder.name}/tokens.bin holds id {int(tokens.max())} >= the vocabulary size {vocab_size}")
    return data


def _load_languages(folder: Path, n_docs: int, n_languages: int) -> np.ndarray:
    with open_regular(folder / f"{_LANGS}.npy", follow_symlinks=False) as f:
        langs = np.load(f, allow_pickle=False)
    if (langs.dtype != np.int64 or langs.shape != (n_docs,)
            or (n_docs and not 0 <= langs.min() <= langs.max() < n_languages)):
        raise CorruptCache(f"{folder.name}/{_LANGS}.npy does not give each document a language")
    return langs


def _count(counts, name: str) -> int:
    value = counts.get(name) if isinstance(counts, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise CorruptCache(f"meta.json has no valid {name}")
    return value


def _check_split(data: TokenData, n_docs: int, n_sents: int, n_documents: int) -> None:
    """The offsets describe `data.tokens` exactly: 1-D int64 arrays of the recorded lengths,
    strictly increasing from 0 to the end, document bounds on sentence bounds."""
    expected = {"doc_offsets": n_docs + 1, "sent_offsets": n_sents + 1, "doc_sents": n_docs + 1, "doc_index": n_docs}
    for name, length in expected.items():
        array = getattr(data, name)
        if array.dtype != np.int64 or array.shape != (length,):
            raise CorruptCache(f"{name}.npy has the wrong type or length")
    sent, docs = data.sent_offsets, data.doc_sents
    if sent[0] != 0 or sent[-1] != data.n_tokens or np.any(np.diff(sent) <= 0):
        raise CorruptCache("sentence offsets do not cover the tokens")
    if docs[0] != 0 or docs[-1] != n_sents or np.any(np.diff(docs) <= 0):
        raise CorruptCache("document sentence ranges are inconsistent")
    if not np.array_equal(sent[docs], data.doc_offsets):
        raise CorruptCache("document offsets are not sentence offsets")
    if n_docs and (data.doc_index.min() < 0 or data.doc_index.max() >= n_documents):
        raise CorruptCache("a document index is outside the corpus")
