"""`--corpus builtin:docs`: a larger built-in corpus, from the documentation of the installed packages.

The default built-in corpus (data/builtin.py, ~1.6 M characters, ~344 k training tokens) is
small enough that a few epochs memorise it. This one needs no download either: it reads the
distributions installed beside plmlab (numpy, torch, transformers, ... whatever
``importlib.metadata`` lists), in this fixed order:

* distributions sorted by normalised name (one per name; plmlab itself is left out);
* each distribution's files from its RECORD, sorted by path: the docstrings of ``.py`` files
  (read with ``ast``, never imported, as data/builtin.py does for the standard library) and the
  text of ``.rst`` / ``.txt`` / ``.md`` files; test folders, ``*.dist-info`` and licence-like
  files are skipped;
* one document per file, cleaned exactly like the default corpus (builtin.clean_paragraphs,
  sentence splitting, documents under MIN_DOC_CHARS / MIN_DOC_SENTENCES dropped);
* at most ``MAX_PACKAGE_CHARS`` per distribution (so sympy's or torch's docstrings do not
  drown the rest, and the build stays bounded) and ``MAX_CHARS`` in all.

The manifest (`docs_manifest()`) records every distribution used with its version, file count
and characters, so a report can say exactly what it trained on. Parsing takes a minute or so,
so documents and manifest are cached as JSON under ``cache_dir()``, keyed by the installed
distributions and their versions (installing or upgrading a package builds a new corpus).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path

from plmlab.data.builtin import MIN_DOC_CHARS, MIN_DOC_SENTENCES, SKIP_DIRS, clean_paragraphs, module_docstrings
from plmlab.data.files import CorruptCache, cache_dir, open_regular, remove_entry, write_text_atomic
from plmlab.data.sentences import split_sentences
from plmlab.errors import PlmlabError, warn

MAX_CHARS = 30_000_000  # the whole corpus (sum of sentence lengths)
MAX_PACKAGE_CHARS = 2_000_000  # per distribution
MAX_FILE_BYTES = 2_000_000  # larger files are data, not documentation
DOC_SUFFIXES = (".rst", ".txt", ".md")
SKIP_PARTS = SKIP_DIRS | {"testing", "benchmarks", "_vendor", "vendor", "examples"}
_NOT_PROSE = re.compile(r"(licen[cs]e|copying|authors|notice|record|requirements|entry_points|top_level|"
                        r"dependency_links|sources|installed-files|changelog|changes|history)", re.I)
CACHE_VERSION = 1  # bump when selection or cleaning changes: invalidates the disk cache
EXCLUDE = frozenset({"plmlab"})


def docs_documents() -> list[list[str]]:
    """The corpus as documents of sentences (see the module docstring)."""
    return [list(doc) for doc in _cached()["documents"]]


def docs_manifest() -> dict:
    """{"packages": [{name, version, files, chars}, ...], "documents", "chars", "key"}."""
    return dict(_cached()["manifest"])


def installed(paths: list[str] | None = None) -> list[metadata.Distribution]:
    """The distributions to read, one per normalised name (the first found), sorted by it."""
    found: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions(**({"path": paths} if paths is not None else {})):
        name = _normalise(dist.metadata.get("Name") or "")
        if name and name not in EXCLUDE and name not in found:
            found[name] = dist
    return [found[name] for name in sorted(found)]


def build(dists: list[metadata.Distribution]) -> dict:
    """Read, clean and cap the distributions' documentation: {"documents", "manifest"}."""
    documents, packages, total = [], [], 0
    for dist in dists:
        if total >= MAX_CHARS:
            break
        docs, files, chars = _package_documents(dist, min(MAX_PACKAGE_CHARS, MAX_CHARS - total))
        if docs:
            documents += docs
            total += chars
            packages.append({"name": _normalise(dist.metadata["Name"]), "version": dist.version,
                             "files": files, "chars": chars})
    manifest = {"packages": packages, "documents": len(documents), "chars": total}
    return {"documents": documents, "manifest": manifest}


def _package_documents(dist: metadata.Distribution, budget: int) -> tuple[list[list[str]], int, int]:
    """(documents, files used, characters) of one distribution, whole documents up to `budget`."""
    docs, files, chars = [], 0, 0
    for path in _doc_files(dist):
        sentences = [s for p in clean_paragraphs(_raw_text(path)) for s in split_sentences(p)]
        size = sum(len(s) for s in sentences)
        if len(sentences) < MIN_DOC_SENTENCES or size < MIN_DOC_CHARS:
            continue
        docs.append(sentences)
        files, chars = files + 1, chars + size
        if chars >= budget:
            break
    return docs, files, chars


def _doc_files(dist: metadata.Distribution) -> list[Path]:
    """The distribution's .py and documentation files, sorted, skipped parts pruned."""
    picked = []
    for entry in sorted(dist.files or [], key=str):
        parts = entry.parts
        name = parts[-1]
        if any(p in SKIP_PARTS or p.endswith((".dist-info", ".egg-info")) or p.startswith(".") for p in parts[:-1]):
            continue
        if name.endswith(".py") or (name.endswith(DOC_SUFFIXES) and not _NOT_PROSE.search(name)):
            path = Path(dist.locate_file(entry))
            try:
                if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FILE_BYTES:
                    picked.append(path)
            except OSError:
                continue
    return picked


def _raw_text(path: Path) -> str:
    if path.suffix == ".py":
        return module_docstrings(str(path))
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def cache_key(dists: list[metadata.Distribution]) -> str:
    listed = " ".join(f"{_normalise(d.metadata['Name'])}=={d.version}" for d in dists)
    return hashlib.sha256(f"{CACHE_VERSION} {sys.version} {listed}".encode()).hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _cached() -> dict:
    """Documents and manifest, from the disk cache when these distributions were read before."""
    dists = installed()
    key = cache_key(dists)
    path = cache_dir() / f"docs-corpus-{key}.json"
    if os.path.lexists(path):
        try:
            return _read_cached(path)
        except (CorruptCache, OSError, ValueError, KeyError, TypeError) as e:
            warn(f"cached docs corpus {path} is damaged ({e}); rebuilding it")
            remove_entry(path)
    built = build(dists)
    if not built["documents"]:
        raise PlmlabError("builtin:docs is empty: no installed package has documentation to read")
    built["manifest"]["key"] = key
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(built))
    except OSError:  # a read-only or full cache only costs the caching
        pass
    return built


def _read_cached(path: Path) -> dict:
    with open_regular(path, follow_symlinks=False) as f:
        data = json.loads(f.read().decode("utf-8"))
    docs, manifest = data["documents"], data["manifest"]
    if not (isinstance(docs, list) and docs and all(isinstance(d, list) and d and all(isinstance(s, str) for s in d)
                                                    for d in docs) and isinstance(manifest, dict)):
        raise CorruptCache("expected documents of sentences and a manifest")
    return {"documents": docs, "manifest": manifest}
