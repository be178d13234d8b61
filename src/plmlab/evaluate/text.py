"""The texts an evaluation reads: a user's files, or the built-in corpus's validation split.

A document is scored as the text of its sentences joined by single spaces -- the text whose
tokens the pretraining shards hold (plmlab.data.shards encodes every sentence after the first
with a leading space) -- so a validation document is scored as the model saw its kind in
pretraining, and its UTF-8 bytes are those of exactly that text (bits per byte).
"""

from __future__ import annotations

from ..data import builtin_documents, read_corpus
from ..data.shards import split_documents

# build_token_data's defaults: the split every pretraining run makes (plmlab.train.run).
VAL_FRACTION = 0.05
SPLIT_SEED = 0


def validation_documents(documents: list[list[str]], val_fraction: float = VAL_FRACTION,
                         seed: int = SPLIT_SEED) -> list[list[str]]:
    """The documents that `build_token_data(documents, ...)` puts in its validation split, in
    corpus order: the same blank-sentence filtering, the same seeded choice, no tokenizing."""
    cleaned = [[s for s in doc if s.strip()] for doc in documents]
    kept = [doc for doc in cleaned if doc]  # blank documents take no part in the split
    is_val = split_documents(len(kept), val_fraction, seed)
    return [doc for doc, val in zip(kept, is_val) if val]


def document_texts(data: str | list[str] | None = None, errors: str = "strict") -> list[str]:
    """One text per document: from `data` (a text file, a folder or JSONL with "text", read by
    plmlab.data's corpus reader), else the built-in corpus's validation documents."""
    if data is None:
        documents = validation_documents(builtin_documents())
    else:
        documents = read_corpus(data, errors=errors)  # one line for a missing, empty or non-UTF-8 file
    return [" ".join(s for s in doc if s.strip()) for doc in documents if any(s.strip() for s in doc)]
