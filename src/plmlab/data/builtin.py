"""The built-in corpus: English documentation that ships with every Python installation.

Sources, in this fixed order (so the corpus is deterministic for a given Python build):

1. ``pydoc_data.topics.topics``: the language reference topics behind ``help("for")``; one
   document per topic, topics sorted by key;
2. the docstrings of the standard library's pure-Python modules, read with ``ast`` from the
   files under ``sysconfig.get_paths()["stdlib"]`` -- *never imported*, since importing ~600
   modules would be slow and has side effects (``antigravity`` opens a browser). One document per
   module file: the module docstring, then every class and function docstring in source order.
   Paths are walked sorted; test suites, IDLE, lib2to3 and site-packages are skipped.

Cleaning keeps prose and drops what is not: indented blocks (code samples, grammar rules),
doctest lines (``>>>``, ``...``), reST directives and underlines, lines that are mostly
punctuation. Paragraphs are whitespace-collapsed and split into sentences; documents with fewer
than two sentences or under 200 characters are dropped. The whole corpus is capped at
``MAX_CHARS`` characters (whole documents, in order) so tokenizing it stays quick on a laptop.

Walking the standard library takes seconds, so the parsed corpus is cached on disk (one JSON
file per Python build under ``cache_dir()``) and memoised per process.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from pathlib import Path
from pydoc_data.topics import topics  # the stdlib's help topics: a plain dict literal, 2 ms to import

from plmlab.errors import warn
from plmlab.data.files import CorruptCache, cache_dir, open_regular, remove_entry, write_text_atomic
from plmlab.data.sentences import split_sentences

MAX_CHARS = 5_000_000  # cap on the corpus size (sum of sentence lengths)
MIN_DOC_CHARS = 200
MIN_DOC_SENTENCES = 2

# Directory names under the stdlib that hold tests, tools or third-party code, not library docs.
SKIP_DIRS = frozenset(
    {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "__pycache__",
     "turtledemo", "pydoc_data"}
)

_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_ROLE = re.compile(r":[\w:.-]+:`([^`<]*?)(?:\s*<[^`]*>)?`")  # :func:`name` -> name
_LITERAL = re.compile(r"``([^`]+)``")  # ``x`` -> x
CACHE_VERSION = 1  # bump when the cleaning or splitting changes: invalidates the disk cache
_CODE_PREFIXES = (">>>", "...", "..", "$ ", "% ", "#", "|")


def builtin_documents(say: Callable[[str], None] | None = None) -> list[list[str]]:
    """Return the built-in corpus as a list of documents, each a list of sentences. `say` gets a
    status line before the standard library is parsed (when the corpus is in no cache)."""
    if say is not None and not _documents.cache_info().currsize and not os.path.lexists(cache_path()):
        say("corpus: reading the docstrings of Python's standard library (once: cached for later runs)")
    return [list(doc) for doc in _documents()]


@functools.lru_cache(maxsize=1)
def _documents() -> tuple[tuple[str, ...], ...]:
    """The corpus, from the disk cache when this Python's stdlib was parsed before: parsing
    every stdlib file with `ast` costs seconds, reading the cached JSON milliseconds. A cached
    file that is not a corpus (truncated, another shape, a symlink) is replaced, with a warning."""
    path = cache_path()
    if os.path.lexists(path):
        try:
            return _read_cached(path)
        except (CorruptCache, OSError, ValueError, RecursionError) as e:
            warn(f"cached built-in corpus {path} is damaged ({e}); rebuilding it")
            remove_entry(path)
    docs = _parse_documents()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(docs))  # a killed run never leaves half a cache
    except OSError:  # a read-only or full cache is no reason to fail: the corpus is in memory
        pass
    return docs


def cache_path() -> Path:
    """The disk cache of the parsed corpus: one JSON file per Python build."""
    key = hashlib.sha256(f"{CACHE_VERSION} {sys.version} {sysconfig.get_paths()['stdlib']}".encode()).hexdigest()[:16]
    return cache_dir() / f"builtin-corpus-{key}.json"


def _read_cached(path: Path) -> tuple[tuple[str, ...], ...]:
    with open_regular(path, follow_symlinks=False) as f:  # a symlink must not read elsewhere
        data = json.loads(f.read().decode("utf-8"))
    if not (isinstance(data, list) and data and all(
            isinstance(doc, list) and doc and all(isinstance(s, str) and s for s in doc) for doc in data)):
        raise CorruptCache("expected a list of documents, each a list of sentences")
    return tuple(tuple(doc) for doc in data)


def _parse_documents() -> tuple[tuple[str, ...], ...]:
    docs, total = [], 0
    for text in _raw_texts():
        sentences = [s for p in clean_paragraphs(text) for s in split_sentences(p)]
        size = sum(len(s) for s in sentences)
        if len(sentences) < MIN_DOC_SENTENCES or size < MIN_DOC_CHARS:
            continue
        docs.append(tuple(sentences))
        total += size
        if total >= MAX_CHARS:
            break
    return tuple(docs)


def _raw_texts() -> Iterator[str]:
    """Yield the raw text of every candidate document, in the fixed corpus order."""
    for key in sorted(topics):
        yield topics[key]
    for path in stdlib_files():
        text = module_docstrings(path)
        if text:
            yield text


def stdlib_files(root: str | None = None) -> list[str]:
    """Sorted paths of the standard library's ``.py`` files, test and tool folders pruned."""
    root = root or sysconfig.get_paths()["stdlib"]
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("."))
        found += [os.path.join(folder, f) for f in sorted(files) if f.endswith(".py")]
    return found


def module_docstrings(path: str) -> str:
    """All docstrings of one source file (module, classes, functions in source order),
    separated by blank lines; "" if the file does not parse."""
    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read())  # bytes: ast honours the file's coding cookie
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError):
        return ""
    return "\n\n".join(_docstrings(tree))


def _docstrings(node: ast.AST) -> Iterator[str]:
    doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
    if doc:
        yield doc
    for child in getattr(node, "body", []):
        if isinstance(child, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _docstrings(child)


def clean_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of a docstring or help topic, each collapsed onto one line."""
    paragraphs = []
    for block in _PARAGRAPH_BREAK.split(inspect.cleandoc(text)):
        lines = block.split("\n")
        if not lines[0].strip() or lines[0][0] in " \t":
            continue  # an indented block: a code sample, grammar rule or literal
        kept = [line.strip() for line in lines if not _is_code_line(line)]
        paragraph = " ".join(" ".join(kept).split())
        paragraph = _LITERAL.sub(r"\1", _ROLE.sub(r"\1", paragraph))
        if _is_prose(paragraph):
            paragraphs.append(paragraph)
    return paragraphs


def _is_code_line(line: str) -> bool:
    stripped = line.strip()
    if not stripped or stripped.startswith(_CODE_PREFIXES):
        return True
    symbols = sum(not (c.isalnum() or c.isspace()) for c in stripped)
    return symbols > 0.3 * len(stripped)  # underlines, tables, code, dict literals


def _is_prose(paragraph: str) -> bool:
    """Prose is long enough, mostly letters, and has at least a few words."""
    if len(paragraph) < 20 or len(paragraph.split()) < 4:
        return False
    letters = sum(c.isalpha() for c in paragraph)
    return letters >= 0.6 * len(paragraph.replace(" ", ""))
