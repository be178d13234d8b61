"""Read a user's corpus into documents of sentences.

A corpus is ``list[list[str]]``: a list of documents, each a list of sentences. Documents are
what the train/validation split and the pair objectives (NSP/SOP: "is B from the same
document?") care about; sentences are what the sentence index in the token shards records.

Inputs, per path (a folder is walked recursively, sorted, taking ``*.txt``, ``*.md`` and
``*.jsonl``, skipping hidden entries):

* ``.jsonl``: one JSON object per line with a string field ``text``; each line is one document
  (blank lines are skipped; objects whose text is empty are skipped). An optional ``lang`` field
  names the document's language (XLM; ``data/languages.py``, with the ``lang:NAME=PATH`` entries
  that give a whole text file one: ``read_corpus_with_languages`` returns them). A line of translation
  pair fields instead (``src``, ``tgt``, ``src_lang``, ``tgt_lang``: XLM's TLM) is the document
  ``[src_lang, src, tgt_lang, tgt]``, unsplit (see ``data/pairs.py``).
* any other file is plain text. How a text file becomes documents is ``doc_sep``:

  - ``"file"`` (default): the file is one document; blank lines separate paragraphs. A long file
    (a book, a wiki dump) is cut into several documents at paragraph breaks every
    ``max_doc_chars`` characters, so that a single big file still gives enough documents for a
    train/validation split and for "random other document" sampling.
  - ``"blank"``: blank lines separate *documents* -- the format of BERT's
    ``create_pretraining_data.py`` (one sentence or paragraph per line, an empty line between
    documents).

  Paragraphs and lines are split into sentences with :func:`split_sentences`.

Files are read as a stream, ``CHUNK_BYTES`` at a time, so memory stays bounded by the
documents kept, whatever the file looks like: a run of text with no blank line longer than
``MAX_PARAGRAPH_CHARS`` -- a minified dump, a 50 MB line -- is cut at its last line break
(else space) before the limit; the cut ends a sentence and, in ``"file"`` mode, may end a
document as a paragraph break does. Folders skip, with a warning, what is not a regular file (a named pipe would block
the walk, a broken symlink cannot be read); such a path given directly is an error.

Files must be UTF-8 (a leading BOM is ignored). With ``errors="strict"`` (default) a bad byte is
a :class:`PlmlabError` that names the file and the byte offset; ``errors="replace"`` substitutes
U+FFFD instead (CLI: ``--encoding-errors replace``).
"""

from __future__ import annotations

import codecs
import json
import os
import re
from collections.abc import Iterator

from plmlab.data.builtin import builtin_documents
from plmlab.data.docs_corpus import docs_documents
from plmlab.data.files import open_regular, path_kind
from plmlab.data.languages import complete_languages, language_path, record_language
from plmlab.data.pairs import is_pair_record, pair_from_record
from plmlab.data.sentences import split_sentences
from plmlab.errors import PlmlabError, warn

SUFFIXES = (".txt", ".md", ".jsonl")
MAX_DOC_CHARS = 20_000
MAX_PARAGRAPH_CHARS = 50_000  # longer runs without a blank line are cut (bounds sentence size)
CHUNK_BYTES = 1 << 20  # read this much at a time
_BOM = b"\xef\xbb\xbf"
# Built-in corpora a `--corpus` value may name instead of a path: the larger one built from the
# documentation of the installed packages (data/docs_corpus.py). (No --corpus at all is the
# default built-in corpus, data/builtin.py; studies call it "builtin".)
NAMED_CORPORA = ("builtin:docs",)
_BLANK_LINES = re.compile(r"\n[ \t]*\n\s*")


def read_corpus(
    paths: list[str] | str,
    errors: str = "strict",
    doc_sep: str = "file",
    max_doc_chars: int = MAX_DOC_CHARS,
) -> list[list[str]]:
    """Read files and folders into documents of sentences (see the module docstring)."""
    return read_corpus_with_languages(paths, errors, doc_sep, max_doc_chars)[0]


def read_corpus_with_languages(
    paths: list[str] | str,
    errors: str = "strict",
    doc_sep: str = "file",
    max_doc_chars: int = MAX_DOC_CHARS,
) -> tuple[list[list[str]], list[str] | None]:
    """(documents, the language of each document or None when the corpus names none); a path
    may be given as ``lang:NAME=PATH`` (data/languages.py)."""
    if errors not in ("strict", "replace"):
        raise PlmlabError(f"encoding errors must be 'strict' or 'replace', not {errors!r}")
    if doc_sep not in ("file", "blank"):
        raise PlmlabError(f"doc_sep must be 'file' or 'blank', not {doc_sep!r}")
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[tuple[list[str], str | None, str]] = []  # (document, language, where it came from)
    named = [str(p) for p in paths if str(p) in NAMED_CORPORA]
    for name in named:  # `--corpus builtin:docs`: a built-in corpus by name, first, in the order given
        found += [(doc, None, name) for doc in corpus_documents(name)]
    for entry in [str(p) for p in paths if str(p) not in NAMED_CORPORA]:
        lang, entry_path = language_path(entry)
        for path in corpus_files([entry_path]):
            if path.endswith(".jsonl"):
                found += _jsonl_documents(path, errors, lang)
            else:
                found += [(doc, lang, path) for doc in _text_documents(path, errors, doc_sep, max_doc_chars)]
    found = [item for item in found if item[0]]
    if not found:
        shown = ", ".join(str(p) for p in paths)
        raise PlmlabError(f"the corpus is empty: no text found in {shown}")
    languages = complete_languages([lang for _, lang, _ in found], [where for _, _, where in found])
    return [doc for doc, _, _ in found], languages


def corpus_documents(name: str) -> list[list[str]]:
    """A corpus by name: one of NAMED_CORPORA (the built-in ones), else a file or folder path."""
    if name == "builtin":
        return builtin_documents()
    if name == "builtin:docs":
        return docs_documents()
    return read_corpus([name])


def corpus_files(paths: list[str]) -> list[str]:
    """Expand folders (recursively, sorted) into corpus files; check that every path is a
    regular file or a folder -- by ``stat``, so a named pipe is never opened (it would block)."""
    files: list[str] = []
    for path in map(str, paths):
        kind = path_kind(path)
        if kind == "folder":
            found = _walk(path)
            if not found:
                raise PlmlabError(f"no {'/'.join(SUFFIXES)} files under folder {path}")
            files += found
        elif kind == "file":
            files.append(path)
        elif kind == "missing":
            raise PlmlabError(f"corpus path not found: {path}")
        else:
            raise PlmlabError(f"corpus path {path} is a {kind}, not a regular file or a folder")
    return files


def _walk(folder: str) -> list[str]:
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(n for n in names if n.endswith(SUFFIXES) and not n.startswith(".")):
            path = os.path.join(root, name)
            kind = path_kind(path)
            if kind == "file":
                found.append(path)
            else:  # a FIFO would block the walk, a broken symlink cannot be read
                warn(f"skipping {path}: a {kind}, not a regular file")
    return found


def text_chunks(path: str, errors: str = "strict") -> Iterator[str]:
    """The file's text, about ``CHUNK_BYTES`` at a time: BOM dropped, newlines made ``\\n``.
    On a bad byte, say where it is in the file and how to get past it."""
    try:
        f = open_regular(path)
    except OSError as e:
        raise PlmlabError(f"cannot read corpus file {path}: {e.strerror}") from None
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    with f:
        head = _read(f, len(_BOM), path)
        offset = len(_BOM) if head == _BOM else 0  # file position of the next byte decoded
        data, carry = (b"" if offset else head), ""
        while True:
            data = data or _read(f, CHUNK_BYTES, path)
            end = not data
            pending = len(decoder.getstate()[0])  # bytes of a character cut by the last read
            try:
                text = carry + decoder.decode(data, final=end)
            except UnicodeDecodeError as e:
                at = offset - pending + e.start  # e.object is the pending bytes + data
                raise PlmlabError(
                    f"{path}: invalid UTF-8 byte 0x{e.object[e.start]:02x} at byte offset {at}; "
                    "fix the file or replace bad bytes with errors='replace' (CLI: --encoding-errors replace)"
                ) from None
            offset += len(data)
            carry = "\r" if not end and text.endswith("\r") else ""  # "\r\n" may straddle two reads
            yield (text[:-1] if carry else text).replace("\r\n", "\n").replace("\r", "\n")
            if end:
                return
            data = b""


def _read(f, size: int, path: str) -> bytes:
    try:
        return f.read(size)
    except OSError as e:  # EIO from a failing disk, EISDIR ...
        raise PlmlabError(f"cannot read corpus file {path}: {e.strerror}") from None


def _lines(chunks: Iterator[str]) -> Iterator[str]:
    pending: list[str] = []
    for chunk in chunks:
        *done, rest = chunk.split("\n")
        if done:
            yield "".join(pending) + done[0]
            yield from done[1:]
            pending = []
        pending.append(rest)
    yield "".join(pending)


def jsonl_records(path: str, errors: str = "strict") -> Iterator[tuple[int, object]]:
    """(line number, parsed JSON) of every non-blank line, streamed; one line for bad JSON."""
    for number, line in enumerate(_lines(text_chunks(path, errors)), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlmlabError(f"{path}: line {number}: invalid JSON ({e.msg})") from None
        except RecursionError:
            raise PlmlabError(f"{path}: line {number}: invalid JSON (nested too deeply)") from None
        yield number, record


def _jsonl_documents(path: str, errors: str, lang: str | None = None) -> list[tuple[list[str], str | None, str]]:
    """(document, language, "path:line") of every record; `lang`: the file's given language."""
    documents = []
    for number, record in jsonl_records(path, errors):
        where = f"{path}:{number}"
        if isinstance(record, dict) and is_pair_record(record):  # TLM: a translation pair (data/pairs.py)
            documents.append((pair_from_record(where, record).document(), lang, where))
            continue
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise PlmlabError(f'{path}: line {number}: expected an object with a string "text" field')
        document = [s for piece in _bounded(record["text"], MAX_PARAGRAPH_CHARS) for s in split_sentences(piece)]
        documents.append((document, record_language(where, record, lang), where))
    return documents


def _text_documents(path: str, errors: str, doc_sep: str, max_doc_chars: int) -> list[list[str]]:
    """``"file"``: one document per file, cut at paragraph breaks once it passes
    ``max_doc_chars``; ``"blank"``: one document per block between blank lines."""
    documents, current, size = [], [], 0
    for piece, closes_paragraph in _pieces(text_chunks(path, errors), MAX_PARAGRAPH_CHARS):
        sentences = split_sentences(piece)
        current += sentences
        size += sum(len(s) for s in sentences)
        if (closes_paragraph and doc_sep == "blank") or (doc_sep == "file" and size >= max_doc_chars):
            documents.append(current)
            current, size = [], 0
    documents.append(current)
    return documents


def _pieces(chunks: Iterator[str], limit: int) -> Iterator[tuple[str, bool]]:
    """(text, closes_paragraph) for every paragraph of the stream, a long one in pieces of at
    most ``limit`` characters. The unfinished tail stays under ``limit`` + one chunk."""
    tail = ""
    for chunk in chunks:
        *paragraphs, tail = _BLANK_LINES.split(tail + chunk)
        for paragraph in paragraphs:
            yield from _closed(_bounded(paragraph, limit))
        while len(tail) > limit:
            piece, tail = _cut(tail, limit)
            yield piece, False
    yield from _closed(_bounded(tail, limit))


def _closed(pieces: list[str]) -> Iterator[tuple[str, bool]]:
    for i, piece in enumerate(pieces):
        yield piece, i == len(pieces) - 1


def _bounded(text: str, limit: int) -> list[str]:
    pieces = []
    while len(text) > limit:
        piece, text = _cut(text, limit)
        pieces.append(piece)
    return pieces + [text]


def _cut(text: str, limit: int) -> tuple[str, str]:
    """Split before ``limit`` at the last line break, else the last space, else at ``limit``;
    the whitespace stays with the rest (it may begin a blank line that the next read completes)."""
    at = text.rfind("\n", 0, limit)
    if at <= 0:
        at = max(text.rfind(" ", 0, limit), text.rfind("\t", 0, limit))
    if at <= 0:
        at = limit
    return text[:at], text[at:]
