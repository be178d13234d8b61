"""Tests for plmlab.data: sentence splitting, the built-in corpus, corpus reading, token shards."""

import json
import os
import random
import time

import numpy as np
import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models, pre_tokenizers

from plmlab.data import (
    TokenData,
    build_token_data,
    builtin_documents,
    cache_dir,
    read_corpus,
    split_sentences,
)
from plmlab.errors import PlmlabError
from plmlab.tokenizers import Tokenizer, train_tokenizer

# ---------------------------------------------------------------- sentences


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Hello world. This is it.", ["Hello world.", "This is it."]),
        ("Mr. Smith met Dr. Who. They talked.", ["Mr. Smith met Dr. Who.", "They talked."]),
        ("Use e.g. This one, i.e. That one etc. And more.", ["Use e.g. This one, i.e. That one etc. And more."]),
        ("Pi is 3.14159 roughly. Next.", ["Pi is 3.14159 roughly.", "Next."]),
        ("Wait... Then what? Nothing!", ["Wait... Then what?", "Nothing!"]),
        ("J. R. R. Tolkien wrote it. So did I. Fine.", ["J. R. R. Tolkien wrote it.", "So did I.", "Fine."]),
        ("The U.S. Army left. Really.", ["The U.S. Army left.", "Really."]),
        ('He said "Stop." Then left.', ['He said "Stop."', "Then left."]),
        ("It was 2010. 2011 was better.", ["It was 2010.", "2011 was better."]),
        ("no capital. so no split", ["no capital. so no split"]),
        ("Line one\nstill one.\n\nNew paragraph", ["Line one still one.", "New paragraph"]),
        ("他说：“你好。”然后走了！真的吗？是的", ["他说：“你好。”", "然后走了！", "真的吗？", "是的"]),
        ("End of English. 中文开始。", ["End of English.", "中文开始。"]),
        ("", []),
    ],
)
def test_split_sentences(text, expected):
    assert split_sentences(text) == expected


# ---------------------------------------------------------------- built-in corpus


def test_builtin_corpus_is_deterministic_and_substantial():
    docs = builtin_documents()
    assert docs == builtin_documents()
    n_chars = sum(len(s) for doc in docs for s in doc)
    assert len(docs) > 100 and n_chars > 500_000
    assert all(len(doc) >= 2 and all(s.strip() == s and s for s in doc) for doc in docs)
    flat = [s for doc in docs for s in doc]
    assert not any(s.startswith(">>>") for s in flat)
    assert any("statement" in s for s in flat)  # pydoc topics are in


def test_builtin_documents_are_copies():
    docs = builtin_documents()
    docs[0].append("mutated")
    assert builtin_documents()[0][-1] != "mutated"


# ---------------------------------------------------------------- reading corpora


def test_read_txt_one_document_per_file(tmp_path):
    (tmp_path / "a.txt").write_text("First sentence. Second one.\n\nA new paragraph here.\n")
    assert read_corpus([str(tmp_path / "a.txt")]) == [
        ["First sentence.", "Second one.", "A new paragraph here."]
    ]


def test_read_txt_blank_line_documents(tmp_path):
    (tmp_path / "a.txt").write_text("Doc one. Still one.\nMore of one.\n\n\nDoc two.\n")
    docs = read_corpus([str(tmp_path / "a.txt")], doc_sep="blank")
    assert docs == [["Doc one.", "Still one.", "More of one."], ["Doc two."]]


def test_long_file_is_cut_at_paragraphs(tmp_path):
    paragraph = "This is a sentence of filler text. " * 10
    (tmp_path / "big.txt").write_text("\n\n".join([paragraph] * 20))
    docs = read_corpus([str(tmp_path / "big.txt")], max_doc_chars=1000)
    assert len(docs) == 7  # 340 chars per paragraph: every 3rd paragraph closes a document
    assert sum(len(d) for d in docs) == 200


def test_read_folder_recursive_sorted_with_jsonl(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "b.txt").write_text("From bee. Yes.")
    (tmp_path / "a.md").write_text("# Title\n\nFrom a.")
    (tmp_path / "sub" / "c.jsonl").write_text(
        json.dumps({"text": "Json one. Two."}) + "\n\n" + json.dumps({"text": "Json three.", "id": 3}) + "\n"
    )
    (tmp_path / "ignored.bin").write_bytes(b"\xff\xfe")
    (tmp_path / ".hidden.txt").write_text("Hidden.")
    docs = read_corpus([str(tmp_path)])
    assert docs == [["# Title", "From a."], ["From bee.", "Yes."], ["Json one.", "Two."], ["Json three."]]


def test_missing_path(tmp_path):
    with pytest.raises(PlmlabError, match="not found: .*nope.txt"):
        read_corpus([str(tmp_path / "nope.txt")])


def test_empty_corpus(tmp_path):
    (tmp_path / "empty.txt").write_text("  \n\n \t\n")
    with pytest.raises(PlmlabError, match="empty"):
        read_corpus([str(tmp_path / "empty.txt")])
    (tmp_path / "folder").mkdir()
    with pytest.raises(PlmlabError, match="no .txt"):
        read_corpus([str(tmp_path / "folder")])


def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = tmp_path / "latin1.txt"
    data = "Grüße aus Köln.".encode("utf-8") + b" Bad: \xe9t\xe9."
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(PlmlabError) as info:
        read_corpus([str(path)])
    message = str(info.value)
    assert "latin1.txt" in message and f"byte offset {offset}" in message
    assert "errors='replace'" in message and "--encoding-errors replace" in message
    assert "\n" not in message
    assert read_corpus([str(path)], errors="replace") == [["Grüße aus Köln.", "Bad: \ufffdt\ufffd."]]


def test_invalid_utf8_offset_counts_the_bom(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfOK \xff")
    with pytest.raises(PlmlabError, match="byte offset 6"):
        read_corpus([str(path)])


@pytest.mark.parametrize(
    "lines, bad_line, reason",
    [
        (['{"text": "ok."}', "", "{not json"], 3, "invalid JSON"),
        (['{"text": "ok."}', '{"body": "no text"}'], 2, '"text"'),
        (['{"text": 5}'], 1, '"text"'),
    ],
)
def test_bad_jsonl_line(tmp_path, lines, bad_line, reason):
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PlmlabError, match=f"data.jsonl: line {bad_line}: .*{reason}"):
        read_corpus([str(path)])


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("PLMLAB_CACHE")
    assert cache_dir().parts[-2:] == (".cache", "plmlab")


# ---------------------------------------------------------------- token shards


def _documents(n_docs=60, seed=0):
    rng = random.Random(seed)
    words = "alpha beta gamma delta model token data train text word sentence layer".split()
    return [
        [" ".join(rng.choice(words) for _ in range(rng.randint(2, 9))).capitalize() + "."
         for _ in range(rng.randint(1, 6))]
        for _ in range(n_docs)
    ]


@pytest.fixture(scope="module")
def gpt2_tokenizer():
    return train_tokenizer([s for d in _documents(200, seed=1) for s in d], "gpt2", 400)


def _check_offsets(data: TokenData):
    assert data.doc_offsets[0] == 0 and data.doc_offsets[-1] == data.n_tokens
    assert data.sent_offsets[0] == 0 and data.sent_offsets[-1] == data.n_tokens
    assert np.all(np.diff(data.sent_offsets) > 0) and np.all(np.diff(data.doc_sents) > 0)
    # every document boundary is a sentence boundary, and doc_sents points at it
    assert np.array_equal(data.sent_offsets[data.doc_sents], data.doc_offsets)
    for name in ("doc_offsets", "sent_offsets", "doc_sents", "doc_index"):
        assert getattr(data, name).dtype == np.int64


def test_shards_round_trip(tmp_path, gpt2_tokenizer):
    docs = _documents()
    train, val = build_token_data(docs, gpt2_tokenizer, tmp_path, val_fraction=0.1, seed=0)
    assert train.n_docs + val.n_docs == len(docs) and val.n_docs == 6
    assert sorted(train.doc_index.tolist() + val.doc_index.tolist()) == list(range(len(docs)))
    for data in (train, val):
        _check_offsets(data)
        assert data.tokens.dtype == np.uint16 and isinstance(data.tokens, np.memmap)
        for d in range(data.n_docs):
            sentences = docs[data.doc_index[d]]
            pieces = data.sentences(d)
            assert len(pieces) == len(sentences)
            assert np.array_equal(data.document(d), np.concatenate(pieces))
            # sentences after the first carry their leading space, so the document decodes exactly
            assert gpt2_tokenizer.decode(data.document(d)) == " ".join(sentences)
            assert pieces[0].tolist() == gpt2_tokenizer.encode(sentences[0], add_special_tokens=False)


def test_split_is_deterministic_by_seed(tmp_path, gpt2_tokenizer):
    docs = _documents()
    a = build_token_data(docs, gpt2_tokenizer, tmp_path / "a", val_fraction=0.2, seed=3)
    b = build_token_data(docs, gpt2_tokenizer, tmp_path / "b", val_fraction=0.2, seed=3)
    c = build_token_data(docs, gpt2_tokenizer, tmp_path / "c", val_fraction=0.2, seed=4)
    for x, y in zip(a, b):
        assert np.array_equal(x.tokens, y.tokens) and np.array_equal(x.doc_index, y.doc_index)
    assert set(a[1].doc_index.tolist()) != set(c[1].doc_index.tolist())
    tiny = build_token_data(docs, gpt2_tokenizer, tmp_path / "d", val_fraction=0.001)
    assert tiny[1].n_docs == 1  # at least one validation document
    none = build_token_data(docs, gpt2_tokenizer, tmp_path / "e", val_fraction=0.0)
    assert none[1].n_docs == 0 and none[1].n_tokens == 0 and none[0].n_docs == len(docs)


def test_cache_hit_skips_tokenizing(tmp_path, gpt2_tokenizer, monkeypatch):
    docs = _documents()
    first = build_token_data(docs, gpt2_tokenizer, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left

    def fail(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(gpt2_tokenizer, "encode_batch", fail)
    start = time.perf_counter()
    second = build_token_data(docs, gpt2_tokenizer, tmp_path)
    assert time.perf_counter() - start < 1.0
    for x, y in zip(first, second):
        assert np.array_equal(x.tokens, y.tokens) and np.array_equal(x.sent_offsets, y.sent_offsets)
    assert len(list(tmp_path.iterdir())) == 1
    with pytest.raises(AssertionError):  # another corpus is another cache entry
        build_token_data(docs[:-1], gpt2_tokenizer, tmp_path)


def test_failed_build_leaves_no_cache(tmp_path, gpt2_tokenizer, monkeypatch):
    monkeypatch.setattr(gpt2_tokenizer, "encode_batch", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        build_token_data(_documents(), gpt2_tokenizer, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_too_few_documents(tmp_path, gpt2_tokenizer):
    with pytest.raises(PlmlabError, match="1 document"):
        build_token_data([["Only one document."], ["  "]], gpt2_tokenizer, tmp_path)


def test_uint32_for_large_vocab(tmp_path):
    vocab = {f"w{i}": i for i in range(70_000)}
    vocab["[UNK]"] = 70_000
    backend = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = Tokenizer(backend)
    docs = [["w1 w69999 w65536", "w3"], ["w70001"], ["w5 w6"]]
    train, val = build_token_data(docs, tokenizer, tmp_path, val_fraction=0.3)
    assert train.tokens.dtype == np.uint32
    all_ids = {d: data.document(i).tolist() for data in (train, val) for i, d in enumerate(data.doc_index)}
    assert all_ids[0] == [1, 69_999, 65_536, 3] and all_ids[1] == [70_000] and all_ids[2] == [5, 6]


def test_default_cache_dir(tmp_path, gpt2_tokenizer, monkeypatch):
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path))
    build_token_data(_documents(), gpt2_tokenizer)
    assert len(os.listdir(tmp_path / "shards")) == 1
