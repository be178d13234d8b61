"""The language table of the XLM objectives (Lample & Conneau 2019, section 3.1): names -> ids.

An id is the position of a name in the table: the model's lang2id order when the `languages`
option gives it (then a name outside it is a one-line error), else names as the data brings them,
each split's new names appended in sorted order (pretraining reads the training split first, whose
documents name the whole corpus's languages: data/shards.py keeps the sorted names of both).
TLM (objectives/tlm.py), CLM and MLM share it, with the same option and its check.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlmlabError
from .options import option


def languages_option():
    """The `languages` option of an objective that emits `language_ids`."""
    return option(None, list, "language names in id order (the model's lang2id); default: the sorted names "
                              "in the data")


def lang_option():
    """The `lang` option: the language of a text shown by `plmlab objective NAME --lang NAME`."""
    return option(None, str, "language of --text (the `plmlab objective` view; XLM)")


def check_languages(objective: str, languages: list | None) -> None:
    if languages is not None and (not languages or not all(isinstance(x, str) for x in languages)
                                  or len(set(languages)) != len(languages)):
        raise PlmlabError(f"objective {objective}: languages must be distinct names, got {languages!r}")


class LanguageTable:
    """Language names in id order; `fixed` when given (see the module docstring)."""

    def __init__(self, languages: list[str] | None) -> None:
        self.fixed = languages is not None
        self.names: list[str] = list(languages or [])
        self._documents: dict[int, tuple[object, np.ndarray]] = {}  # id(data) -> (data, ids)

    def id(self, name: str, where: str = "") -> int:
        if name not in self.names:
            if self.fixed:
                raise PlmlabError(f"{where}unknown language {name!r}: not one of the model's languages "
                                  f"({', '.join(self.names)})")
            self.names.append(name)
        return self.names.index(name)

    def add(self, names, where: str = "") -> None:
        """Register the names a split brings, new ones in sorted order."""
        for name in sorted(set(names) - set(self.names)):
            self.id(name, where)

    def of_documents(self, data) -> np.ndarray | None:
        """Language id of each document of `data` (int64 [n_docs]); None where it names none."""
        if data.doc_languages is None:
            return None
        cached = self._documents.get(id(data))
        if cached is None or cached[0] is not data:
            self.add(data.languages, "the corpus: ")
            ids = np.array([self.names.index(n) for n in data.languages], dtype=np.int64)
            cached = (data, ids[data.doc_languages])  # (n_docs,)
            self._documents[id(data)] = cached
        return cached[1]


class LanguageIds:
    """What CLM and MLM add for XLM (sections 3.1-3.2): with a corpus that names languages, every
    token's `language_ids` is its document's language; in the `plmlab objective` view, `lang`'s.
    Needs options with `languages` (and `lang` for the view); call `init_languages` in `__init__`.
    TLM uses the table alone: its pairs name their own languages."""

    pad_language = {"language_ids": 0}  # padding's language id, as TLM's

    def init_languages(self) -> None:
        self.table = LanguageTable(self.opts.languages)

    @property
    def languages(self) -> list[str]:
        """The language names in id order (what a trained model's lang2id becomes)."""
        return self.table.names

    def document_languages(self, data) -> np.ndarray | None:
        """Language id of each document of `data`, None for a corpus without languages."""
        return self.table.of_documents(data)

    def view_languages(self, n: int) -> np.ndarray | None:
        """(n,) the `lang` option's id for a shown text, None without it."""
        if self.opts.lang is None:
            return None
        return np.full(n, self.table.id(self.opts.lang, "--lang: "), dtype=np.int64)

    def describe_languages(self, example: dict) -> dict:
        return {"languages": list(self.languages)} if "language_ids" in example else {}
