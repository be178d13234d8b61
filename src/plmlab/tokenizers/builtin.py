"""Tokenizers of every style trained on the built-in corpus, cached on disk."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import tokenizers as hf

from plmlab.data import builtin_documents, cache_dir, corpus_fingerprint
from plmlab.data.files import is_plain_folder, remove_entry
from plmlab.errors import PlmlabError, warn
from plmlab.tokenizers import train as training
from plmlab.tokenizers.load import load_tokenizer, read_json
from plmlab.tokenizers.styles import DEFAULT_VOCAB_SIZE, STYLES, get_style
from plmlab.tokenizers.tokenizer import Tokenizer


def builtin_tokenizer(style: str, vocab_size: int | None = None, say: Callable[[str], None] | None = None) -> Tokenizer:
    """A ``style`` tokenizer trained on the whole built-in corpus (each style trains in a few
    seconds on 2 cores), cached under ``cache_dir()/tokenizers/<style>-<vocab>-<key>/``, where
    the key hashes the corpus, the ``tokenizers`` version, ``TRAINING_VERSION`` and the style's
    definition (its specials and template: a tokenizer cached before a style changed what encode
    adds is never reused). A cached entry that does not load as that style is retrained, with a
    warning; a cache that cannot be written (full, read-only) only costs the caching. `say`
    gets a status line before a tokenizer is trained."""
    spec = get_style(style)
    vocab_size = vocab_size or DEFAULT_VOCAB_SIZE
    docs = builtin_documents()
    key = f"{corpus_fingerprint(docs)} {hf.__version__} {TRAINING_VERSION} {spec!r}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    folder = cache_dir() / "tokenizers" / f"{style}-{vocab_size}-{digest}"
    if os.path.lexists(folder):
        try:
            return _cached_tokenizer(folder, style)
        except (PlmlabError, OSError) as e:
            warn(f"cached tokenizer {folder} is damaged ({e}); training it again")
            remove_entry(folder)
    if say is not None:
        say(f"tokenizer: training a {style}-style tokenizer of {vocab_size:,} ids on the built-in corpus "
            "(once: it is cached for later runs)")
    tokenizer = training.train_tokenizer((s for doc in docs for s in doc), style, vocab_size)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tokenizer.save(tmp)
        try:
            os.rename(tmp, folder)  # atomic: a killed run leaves no half-written tokenizer
        except OSError:  # another process saved the same tokenizer first
            remove_entry(tmp)
    except OSError as e:
        remove_entry(tmp)
        warn(f"cannot cache the built-in {style} tokenizer under {folder.parent} ({e.strerror or e}); "
             "it will be trained again next time")
        return tokenizer
    return load_tokenizer(folder)  # what every later run will load


def _cached_tokenizer(folder: Path, style: str) -> Tokenizer:
    """A cached built-in tokenizer, if it is one: real files only (a planted symlink must not
    make plmlab read elsewhere), loading as ``style`` with that style's special tokens."""
    if not is_plain_folder(folder):
        raise PlmlabError("not a folder")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if not (folder / name).is_file() or (folder / name).is_symlink():
            raise PlmlabError(f"{name} is missing or not a regular file")
    ours = read_json(folder / "tokenizer_config.json").get("plmlab")
    if not isinstance(ours, dict) or ours.get("style") != style or ours.get("special_tokens") != STYLES[style].specials:
        raise PlmlabError(f"it is not a {style} tokenizer")
    return load_tokenizer(folder)


TRAINING_VERSION = 1  # bump when a style's training recipe changes: invalidates cached tokenizers
