"""Data: read corpora, the built-in corpus, sentence splitting, tokenized shards.

The document model is deliberately plain: a corpus is ``list[list[str]]`` -- a list of
documents, each a list of sentences. Everything downstream (tokenizer training, token shards,
pair objectives) consumes that shape.

    documents = read_corpus(["my_texts/"])          # or builtin_documents()
    train, val = build_token_data(documents, tokenizer)
    train.document(0), train.sentences(0)            # token id arrays
"""

from __future__ import annotations

from plmlab.data.builtin import builtin_documents
from plmlab.data.corpus import read_corpus, read_corpus_with_languages
from plmlab.data.files import cache_dir
from plmlab.data.sentences import split_sentences
from plmlab.data.shards import TokenData, build_token_data, corpus_fingerprint

__all__ = [
    "TokenData",
    "build_token_data",
    "builtin_documents",
    "cache_dir",
    "corpus_fingerprint",
    "read_corpus",
    "read_corpus_with_languages",
    "split_sentences",
]
