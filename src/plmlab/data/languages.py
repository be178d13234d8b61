"""The language of each corpus document, for XLM's CLM and MLM with language embeddings
(Lample & Conneau 2019, sections 3.1-3.2: each stream is one language, every token carries it).

Two ways to name a document's language, which mix freely in one corpus:

* a JSONL record's ``"lang"`` field: ``{"text": "Le chat dort.", "lang": "fr"}``;
* a plain-text file or folder given as the corpus entry ``lang:NAME=PATH`` (the CLI's
  ``--corpus-lang NAME=PATH``): every document read from it is NAME. A JSONL file given this way
  takes NAME for its records without "lang"; a record naming another language is an error.

A corpus names a language for every document or for none: one document without a language in a
corpus that names some is a one-line error saying where it came from (``path:line`` for JSONL).
A language is one code without spaces ("en", "zh-Hans"). The names travel with the documents
into the token shards (data/shards.py: the cache key covers them) and on to the objectives.
"""

from __future__ import annotations

from ..errors import PlmlabError

LANG_PREFIX = "lang:"
LANG_FIELD = "lang"


def language_path(entry: str) -> tuple[str | None, str]:
    """('fr', 'texts/fr.txt') for the entry 'lang:fr=texts/fr.txt'; (None, entry) for any other."""
    if not entry.startswith(LANG_PREFIX):
        return None, entry
    name, sep, path = entry[len(LANG_PREFIX):].partition("=")
    if not sep or not path:
        raise PlmlabError(f"corpus entry {entry!r}: expected {LANG_PREFIX}NAME=PATH (a language and a file or folder)")
    return check_language(f"corpus entry {entry!r}", name), path


def language_entry(spec: str) -> str:
    """The corpus entry of a `--corpus-lang NAME=PATH` value: 'lang:NAME=PATH' (checked)."""
    name, sep, path = spec.partition("=")
    if not sep or not path:
        raise PlmlabError(f"--corpus-lang {spec!r}: expected NAME=PATH (e.g. fr=texts/fr.txt)")
    return f"{LANG_PREFIX}{check_language(f'--corpus-lang {spec!r}', name)}={path}"


def check_language(where: str, value) -> str:
    """A language name: a string of one code without spaces, or a one-line error."""
    if not isinstance(value, str):
        raise PlmlabError(f'{where}: "{LANG_FIELD}" must be a string language code ("en"), got {value!r}')
    name = value.strip()
    if not name or len(name.split()) != 1:
        raise PlmlabError(f'{where}: a language must be one code without spaces ("en"), got {value!r}')
    return name


def record_language(where: str, record: dict, given: str | None) -> str | None:
    """A JSONL record's language: its "lang" field, else the one its file was given with."""
    if LANG_FIELD not in record:
        return given
    name = check_language(where, record[LANG_FIELD])
    if given is not None and name != given:
        raise PlmlabError(f"{where}: \"lang\" is {name!r}, but the file is given as {given!r} "
                          f"({LANG_PREFIX}{given}=...)")
    return name


def complete_languages(languages: list[str | None], origins: list[str]) -> list[str] | None:
    """Every document's language, or None when the corpus names none (see the module docstring)."""
    named = [i for i, lang in enumerate(languages) if lang is not None]
    if not named:
        return None
    missing = next((i for i, lang in enumerate(languages) if lang is None), None)
    if missing is not None:
        first = named[0]
        raise PlmlabError(f'{origins[missing]}: no "{LANG_FIELD}" for this document, but the corpus names '
                          f"languages ({origins[first]}: {languages[first]!r}); give every document one "
                          f'(a JSONL "{LANG_FIELD}" field, or --corpus-lang NAME=PATH for a text file)')
    return [str(lang) for lang in languages]
