"""Read a user's corpus into documents of sentences.

A corpus is ``list[list[str]]``: a list of documents, each a list of sentences. Documents are
what the train/validation split and the pair objectives (NSP/SOP: "is B from the same
document?") care about; sentences are what the sentence index in the token shards records.

Inputs, per path (a folder is walked recursively, sorted, taking ``*.txt``, ``*.md`` and
``*.jsonl``, skipping hidden entries):

* ``.jsonl``: one JSON object per line with a string field ``text``; each line is one document
  (blank lines are skipped; objects whose text is empty are skipped).
* any other file is plain text. How a text file becomes documents is ``doc_sep``:

  - ``"file"`` (default): the file is one document; blank lines separate paragraphs. A long file
    (a book, a wiki dump) is cut into several documents at paragraph breaks every
    ``max_doc_chars`` characters, so that a single big file still gives enough documents for a
    train/validation split and for "random other document" sampling.
  - ``"blank"``: blank lines separate *documents* -- the format of BERT's
    ``create_pretraining_data.py`` (one sentence or paragraph per line, an empty line between
    documents).

  Paragraphs and lines are split into sentences with :func:`split_sentences`.

Files must be UTF-8 (a leading BOM is ignored). With ``errors="strict"`` (default) a bad byte is
a :class:`PlmlabError` that names the file and the byte offset; ``errors="replace"`` substitutes
U+FFFD instead (CLI: ``--encoding-errors replace``).
"""

from __future__ import annotations

import json
import os
import re

from plmlab.data.sentences import split_sentences
from plmlab.errors import PlmlabError

SUFFIXES = (".txt", ".md", ".jsonl")
MAX_DOC_CHARS = 20_000
_BOM = b"\xef\xbb\xbf"
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


def read_corpus(
    paths: list[str] | str,
    errors: str = "strict",
    doc_sep: str = "file",
    max_doc_chars: int = MAX_DOC_CHARS,
) -> list[list[str]]:
    """Read files and folders into documents of sentences (see the module docstring)."""
    if errors not in ("strict", "replace"):
        raise PlmlabError(f"encoding errors must be 'strict' or 'replace', not {errors!r}")
    if doc_sep not in ("file", "blank"):
        raise PlmlabError(f"doc_sep must be 'file' or 'blank', not {doc_sep!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    documents: list[list[str]] = []
    for path in corpus_files(paths):
        text = read_text(path, errors)
        if path.endswith(".jsonl"):
            documents += _jsonl_documents(path, text)
        elif doc_sep == "blank":
            documents += [split_sentences(block) for block in _BLANK_LINES.split(text)]
        else:
            documents += _file_documents(text, max_doc_chars)
    documents = [doc for doc in documents if doc]
    if not documents:
        shown = ", ".join(str(p) for p in paths)
        raise PlmlabError(f"the corpus is empty: no text found in {shown}")
    return documents


def corpus_files(paths: list[str]) -> list[str]:
    """Expand folders (recursively, sorted) into corpus files; check that every path exists."""
    files: list[str] = []
    for path in map(str, paths):
        if os.path.isdir(path):
            found = _walk(path)
            if not found:
                raise PlmlabError(f"no {'/'.join(SUFFIXES)} files under folder {path}")
            files += found
        elif os.path.isfile(path):
            files.append(path)
        else:
            raise PlmlabError(f"corpus path not found: {path}")
    return files


def _walk(folder: str) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names)
                  if n.endswith(SUFFIXES) and not n.startswith(".")]
    return found


def read_text(path: str, errors: str = "strict") -> str:
    """Decode a UTF-8 file; on a bad byte, say where it is and how to get past it."""
    with open(path, "rb") as f:
        data = f.read()
    skip = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skip:].decode("utf-8", errors=errors)
    except UnicodeDecodeError as e:
        offset = skip + e.start  # offset in the file, not in the BOM-less buffer
        raise PlmlabError(
            f"{path}: invalid UTF-8 byte 0x{data[offset]:02x} at byte offset {offset}; "
            "fix the file or replace bad bytes with errors='replace' (CLI: --encoding-errors replace)"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _jsonl_documents(path: str, text: str) -> list[list[str]]:
    documents = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlmlabError(f"{path}: line {number}: invalid JSON ({e.msg})") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PlmlabError(f'{path}: line {number}: expected an object with a string "text" field')
        documents.append(split_sentences(record["text"]))
    return documents


def _file_documents(text: str, max_doc_chars: int) -> list[list[str]]:
    """One document per file, cut at paragraph breaks once it passes ``max_doc_chars``."""
    documents, current, size = [], [], 0
    for paragraph in _BLANK_LINES.split(text):
        sentences = split_sentences(paragraph)
        current += sentences
        size += sum(len(s) for s in sentences)
        if size >= max_doc_chars:
            documents.append(current)
            current, size = [], 0
    documents.append(current)
    return documents
