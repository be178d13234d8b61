"""The texts an evaluation reads: a user's files as written, or the built-in corpus's validation split.

A user's data is scored as written, as lm-eval's rolling log-likelihood and transformers'
perplexity recipe score it -- newlines, indentation and blank lines are text a model predicts:

    FILE.txt / FILE.md / any other  one document: the file's UTF-8 text byte for byte (a leading
                                    BOM aside: it marks the encoding and is not text)
    FILE.jsonl                      one document per line: its "text" field as it is
    FOLDER                          one document per text file and per JSONL line, in the corpus
                                    reader's order (walked recursively, sorted, *.txt *.md *.jsonl)

so bits per byte divides by the file's bytes. Whitespace-only documents hold nothing to score and
are left out.

The built-in corpus exists only as sentences (plmlab.data.builtin cuts the documentation into
them), and so do named corpora (`builtin:docs`): their documents are scored as the text of their
sentences joined by single spaces -- the text whose tokens the pretraining shards hold
(plmlab.data.shards encodes every sentence after the first with a leading space) -- so a
validation document is scored as the model saw its kind in pretraining, and bits per byte counts
the bytes of exactly that text. `Documents.how` says which of the two a result scored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..data import builtin_documents, read_corpus
from ..data.corpus import NAMED_CORPORA, corpus_files, jsonl_records
from ..data.files import open_regular
from ..data.shards import split_documents
from ..errors import PlmlabError

# build_token_data's defaults: the split every pretraining run makes (plmlab.train.run).
VAL_FRACTION = 0.05
SPLIT_SEED = 0
AS_WRITTEN = "as written"
JOINED = "sentences joined by single spaces, as pretraining's shards hold them"
_BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Documents:
    texts: list[str]  # one per document
    sources: list[str]  # where each came from: FILE, FILE:LINE, or the corpus's name
    how: str  # AS_WRITTEN, or how sentences were joined (said in the result)


def validation_documents(documents: list[list[str]], val_fraction: float = VAL_FRACTION,
                         seed: int = SPLIT_SEED) -> list[list[str]]:
    """The documents that `build_token_data(documents, ...)` puts in its validation split, in
    corpus order: the same blank-sentence filtering, the same seeded choice, no tokenizing."""
    cleaned = [[s for s in doc if s.strip()] for doc in documents]
    kept = [doc for doc in cleaned if doc]  # blank documents take no part in the split
    is_val = split_documents(len(kept), val_fraction, seed)
    return [doc for doc, val in zip(kept, is_val) if val]


def read_documents(data: str | list[str] | None = None, errors: str = "strict") -> Documents:
    """The documents of `data` (see the module docstring), else the built-in validation split."""
    if errors not in ("strict", "replace"):
        raise PlmlabError(f"encoding errors must be 'strict' or 'replace', not {errors!r}")
    if data is None:
        return _joined(validation_documents(builtin_documents()), "builtin (validation split)")
    paths = [str(p) for p in ([data] if isinstance(data, (str, os.PathLike)) else data)]
    if len(paths) == 1 and paths[0] in NAMED_CORPORA:
        return _joined(read_corpus(paths), paths[0])
    found: list[tuple[str, str]] = []  # (source, text)
    for path in corpus_files(paths):  # one line for a missing path or an empty folder
        if path.endswith(".jsonl"):
            found += _jsonl_texts(path, errors)
        else:
            found.append((path, _file_text(path, errors)))
    found = [(where, text) for where, text in found if text.strip()]
    if not found:
        raise PlmlabError(f"the data is empty: no text found in {', '.join(paths)}")
    return Documents([text for _, text in found], [where for where, _ in found], AS_WRITTEN)


def document_texts(data: str | list[str] | None = None, errors: str = "strict") -> list[str]:
    """One text per document (read_documents' texts)."""
    return read_documents(data, errors).texts


def _joined(documents: list[list[str]], name: str) -> Documents:
    texts = [" ".join(s for s in doc if s.strip()) for doc in documents if any(s.strip() for s in doc)]
    return Documents(texts, [name] * len(texts), f"{name}: {JOINED}")


def _file_text(path: str, errors: str) -> str:
    """The file's text, byte for byte but a leading BOM; one line on an unreadable file or a bad byte."""
    try:
        with open_regular(path) as f:
            raw = f.read()
    except OSError as e:
        raise PlmlabError(f"cannot read {path}: {e.strerror}") from None
    skip = len(_BOM) if raw.startswith(_BOM) else 0
    try:
        return raw[skip:].decode("utf-8", errors)
    except UnicodeDecodeError as e:
        raise PlmlabError(f"{path}: invalid UTF-8 byte 0x{e.object[e.start]:02x} at byte offset {skip + e.start}; "
                          "save the file as UTF-8") from None


def _jsonl_texts(path: str, errors: str) -> list[tuple[str, str]]:
    """(FILE:LINE, its "text") of every record. The reader makes line ends "\\n", which changes no
    text: JSON escapes every line break inside a string."""
    out = []
    for number, record in jsonl_records(path, errors):
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PlmlabError(f'{path}: line {number}: expected an object with a string "text" field')
        out.append((f"{path}:{number}", record["text"]))
    return out
