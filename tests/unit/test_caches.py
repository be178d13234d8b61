"""Damaged, forged and unwritable caches (issue 9): the token shards and the parsed built-in
corpus are checked before they are trusted, rebuilt with one warning line when they fail, and
a build that cannot be written is one error line that leaves no entry behind."""

import errno
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import plmlab.data.builtin as builtin
import plmlab.data.shards as shards
from plmlab.data import build_token_data, builtin_documents
from plmlab.errors import PlmlabError
from plmlab.tokenizers import train_tokenizer

WORDS = "alpha beta gamma delta model token data train text word sentence layer".split()
DOCS = [[f"{WORDS[(d + i) % 12].capitalize()} {WORDS[(3 * d + i) % 12]} {WORDS[d % 12]}." for i in range(1 + d % 4)]
        for d in range(40)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer([s for doc in DOCS for s in doc] * 3, "gpt2", 300)


def _entry(root):
    (entry,) = [p for p in root.iterdir() if not p.name.startswith(".")]
    return entry


def _build(docs, tokenizer, root):
    """Both splits as in-memory copies (the memory maps would see the damage done to the files)."""
    fields = ("tokens", "doc_offsets", "sent_offsets", "doc_sents", "doc_index")
    return [{f: np.array(getattr(data, f)) for f in fields}
            for data in build_token_data(docs, tokenizer, root, val_fraction=0.1)]


def _assert_equal(a, b):
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def _out_of_range(entry):
    tokens = np.fromfile(entry / "train" / "tokens.bin", dtype=np.uint16)
    tokens[3] = 65535  # >= the vocabulary size: an embedding lookup would fail or read garbage
    tokens.tofile(entry / "train" / "tokens.bin")


def _truncated(entry):
    with open(entry / "train" / "tokens.bin", "r+b") as f:
        f.truncate(10)


def _shifted_offsets(entry):
    offsets = np.load(entry / "train" / "sent_offsets.npy")
    np.save(entry / "train" / "sent_offsets.npy", offsets[::-1].copy())


def _meta_list(entry):
    (entry / "meta.json").write_text("[1, 2, 3]")


def _meta_truncated(entry):
    (entry / "meta.json").write_text('{"format": 1, "dtype": "uint')


def _meta_object_dtype(entry):
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "dtype": "object"}))


def _index_outside(entry):
    index = np.load(entry / "val" / "doc_index.npy")
    index[0] = 10_000
    np.save(entry / "val" / "doc_index.npy", index)


def _pickled_offsets(entry):
    np.save(entry / "train" / "doc_index.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)


def _folder_emptied(entry):
    for p in entry.rglob("*"):
        if p.is_file():
            p.unlink()


@pytest.mark.parametrize("damage", [_out_of_range, _truncated, _shifted_offsets, _meta_list, _meta_truncated,
                                    _meta_object_dtype, _index_outside, _pickled_offsets, _folder_emptied])
def test_damaged_shard_cache_is_rebuilt_with_a_warning(tmp_path, tokenizer, capsys, damage):
    fresh = _build(DOCS, tokenizer, tmp_path)
    damage(_entry(tmp_path))
    _assert_equal(_build(DOCS, tokenizer, tmp_path), fresh)
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"plmlab: token cache {_entry(tmp_path)} is damaged (") and line.endswith("); rebuilding it")
    build_token_data(DOCS, tokenizer, tmp_path, val_fraction=0.1)  # the rebuilt entry is trusted
    assert capsys.readouterr().err == ""


def test_forged_symlinks_never_read_outside_the_cache(tmp_path, tokenizer, capsys):
    cache = tmp_path / "cache"
    fresh = _build(DOCS, tokenizer, cache)
    entry = _entry(cache)
    outside = tmp_path / "outside"
    outside.mkdir()
    # a file of exactly the right size, outside the cache, that a forged link points at
    secret = outside / "secret.bin"
    secret.write_bytes(b"\x00\x01" * len(fresh[0]["tokens"]))
    (entry / "train" / "tokens.bin").unlink()
    (entry / "train" / "tokens.bin").symlink_to(secret)
    _assert_equal(_build(DOCS, tokenizer, cache), fresh)
    assert "is damaged" in capsys.readouterr().err and secret.exists()
    # the whole entry moved outside and replaced by a link: the link goes, the folder stays
    entry = _entry(cache)
    os.rename(entry, outside / "entry")
    entry.symlink_to(outside / "entry")
    _assert_equal(_build(DOCS, tokenizer, cache), fresh)
    assert "not a folder" in capsys.readouterr().err
    assert (outside / "entry" / "meta.json").is_file() and not _entry(cache).is_symlink()
    # a hard link is refused too: it could be a file that was never written into the cache
    entry = _entry(cache)
    os.link(entry / "val" / "doc_index.npy", outside / "hard.npy")
    _assert_equal(_build(DOCS, tokenizer, cache), fresh)
    assert "hard-linked" in capsys.readouterr().err


def test_full_disk_while_building_is_one_line_and_leaves_nothing(tmp_path, tokenizer, monkeypatch):
    real_save = np.save

    def full(f, array, *args, **kwargs):
        real_save(f, array[: len(array) // 2])  # half a file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shards.np, "save", full)
    with pytest.raises(PlmlabError) as info:
        build_token_data(DOCS, tokenizer, tmp_path)
    message = str(info.value)
    assert message.startswith(f"cannot write the token cache under {tmp_path}: no space left on the device")
    assert "PLMLAB_CACHE" in message and "\n" not in message
    assert list(tmp_path.iterdir()) == []  # no half-written entry, no temporary folder
    monkeypatch.setattr(shards.np, "save", real_save)
    build_token_data(DOCS, tokenizer, tmp_path)  # space again: builds normally
    assert len(list(tmp_path.iterdir())) == 1


def test_file_size_limit_while_building_is_one_line(tmp_path):
    """A real write failure: `ulimit -f` (RLIMIT_FSIZE) makes write() fail with EFBIG."""
    script = textwrap.dedent(f"""
        import os, resource, sys
        from plmlab.data import build_token_data
        from plmlab.errors import PlmlabError
        from plmlab.tokenizers import train_tokenizer
        docs = [["Word number %d here." % i, "And then more words."] for i in range(3000)]
        tok = train_tokenizer([s for d in docs for s in d], "gpt2", 300)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))  # tokens.bin is ~60 KB
        try:
            build_token_data(docs, tok, {str(tmp_path / "c")!r})
        except PlmlabError as e:
            print(e)
        print(sorted(os.listdir({str(tmp_path / "c")!r})))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0, out.stderr
    assert lines[0].startswith("cannot write the token cache under") and "file size limit exceeded" in lines[0]
    assert lines[1] == "[]"


def test_long_sentences_are_encoded_in_bounded_batches(tmp_path, tokenizer, monkeypatch):
    """HF keeps ~100 bytes per token of a batch: batches are bounded by characters as well as
    sentences, a long document is split across batches, and the shards are the same."""
    long_doc = [("alpha beta " * 70).strip() + f" {i}." for i in range(30)]  # ~770 characters a sentence
    docs = [long_doc, long_doc[:3]] + DOCS
    monkeypatch.setattr(shards, "CHUNK_CHARS", 10**9)
    whole = _build(docs, tokenizer, tmp_path / "whole")
    monkeypatch.setattr(shards, "CHUNK_CHARS", 3000)
    sizes, real = [], tokenizer.encode_batch

    def spy(texts, add_special_tokens=False):
        sizes.append(sum(map(len, texts)))
        return real(texts, add_special_tokens=add_special_tokens)

    monkeypatch.setattr(tokenizer, "encode_batch", spy)
    _assert_equal(_build(docs, tokenizer, tmp_path / "batched"), whole)
    assert len(sizes) > 8 and max(sizes) <= 3000 + 800  # the budget plus at most one sentence


# ---------------------------------------------------------------- the parsed built-in corpus


@pytest.fixture
def small_builtin(monkeypatch, tmp_path):
    """A private cache and a stand-in for the (seconds-long) stdlib parse; the memo is reset
    before and after, so no other test sees the stand-in."""
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path))
    parsed = (("First sentence here.", "Second one."), ("Another document.", "With two sentences."))
    monkeypatch.setattr(builtin, "_parse_documents", lambda: parsed)
    builtin._documents.cache_clear()
    yield [list(doc) for doc in parsed]
    builtin._documents.cache_clear()


@pytest.mark.parametrize("content", ["[1, 2, 3]", '[["ok.", "fine."], ["cut', "{}", '[["ok."], [7]]', "[]",
                                     '[["ok.", ""]]'])
def test_damaged_builtin_corpus_cache_is_rebuilt(small_builtin, capsys, content):
    path = builtin.cache_path()
    path.write_text(content)
    assert builtin_documents() == small_builtin
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"plmlab: cached built-in corpus {path} is damaged (") and line.endswith("rebuilding it")
    assert json.loads(path.read_text()) == small_builtin  # replaced by a good copy
    builtin._documents.cache_clear()
    assert builtin_documents() == small_builtin and capsys.readouterr().err == ""


def test_builtin_corpus_cache_symlink_is_not_followed(small_builtin, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps([["Forged text.", "From outside."]]))
    builtin.cache_path().symlink_to(elsewhere)
    assert builtin_documents() == small_builtin
    assert "is damaged" in capsys.readouterr().err
    assert elsewhere.is_file() and not builtin.cache_path().is_symlink()


def test_builtin_corpus_on_a_full_disk_still_works(small_builtin, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    assert builtin_documents() == small_builtin
    assert list(builtin.cache_path().parent.iterdir()) == []  # the temporary file is gone too
