"""NSP / SOP pair construction and RoBERTa's four input formats, on a synthetic token corpus.

Every token of the corpus is unique (ids 10, 11, ...), so where a piece of an example came
from can be read off its ids.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from plmlab.data.shards import TokenData
from plmlab.errors import PlmlabError
from plmlab.objectives import example_rng, get_objective
from plmlab.objectives.pairs import Template, batches_by_tokens, truncate_pair
from plmlab.tokenizers import train_tokenizer

FIRST = 10


def corpus(rng, n_docs=40, sents=(1, 8), length=(1, 30)) -> TokenData:
    sizes = [rng.integers(*length, size=rng.integers(*sents)) for _ in range(n_docs)]
    flat = np.concatenate(sizes)
    sent_offsets = np.concatenate(([0], np.cumsum(flat)))
    doc_sents = np.concatenate(([0], np.cumsum([len(s) for s in sizes])))
    return TokenData(tokens=np.arange(FIRST, FIRST + flat.sum(), dtype=np.uint32), doc_offsets=sent_offsets[doc_sents],
                     sent_offsets=sent_offsets, doc_sents=doc_sents, doc_index=np.arange(n_docs))


class FakeTokenizer:
    """Wraps a real (tiny) tokenizer but reports a vocabulary covering the corpus ids."""

    def __init__(self, real, vocab: int) -> None:
        self.real, self.vocab_size = real, vocab

    def __getattr__(self, name):
        return getattr(self.real, name)

    def convert_ids_to_tokens(self, ids):
        return [self.real.id_to_token(i) or f"t{i}" for i in ids]


@pytest.fixture(scope="module")
def toks():
    texts = ["a b c d e f g h", "the cat sat on the mat"] * 5
    return {s: FakeTokenizer(train_tokenizer(texts, s, vocab_size=60, min_frequency=1), 100_000)
            for s in ("bert", "roberta", "albert")}


@pytest.fixture(scope="module")
def data():
    return corpus(np.random.default_rng(0))


def doc_of(data: TokenData, token: int) -> int:
    return int(np.searchsorted(data.doc_offsets, token - FIRST, side="right")) - 1


def split_pair(ex, tok) -> tuple[np.ndarray, np.ndarray]:
    ids, types = ex["input_ids"], ex["token_type_ids"]
    real = ids >= FIRST
    return ids[real & (types == 0)], ids[real & (types == 1)]


def contiguous(x: np.ndarray) -> bool:
    return bool(len(x) == 0 or (np.diff(x) == 1).all())


def examples(obj, data, n=None, seed=0):
    n = obj.num_examples(data) if n is None else n
    return [obj.example(data, i, example_rng(seed, 0, i)) for i in range(n)]


def test_templates(toks):
    bert, roberta = Template.from_tokenizer(toks["bert"]), Template.from_tokenizer(toks["roberta"])
    assert (bert.pair_prefix, bert.middle, bert.pair_suffix, bert.types) == ([2], [3], [3], (0, 1))
    assert (roberta.pair_prefix, roberta.middle, roberta.pair_suffix, roberta.types) == ([0], [2, 2], [2], (0, 0))
    ex = roberta.wrap_pair(np.array([50, 51]), np.array([60]))
    assert ex["input_ids"].tolist() == [0, 50, 51, 2, 2, 60, 2] and ex["token_type_ids"].tolist() == [0] * 7


def test_truncate_pair_cuts_the_longer_side():
    rng = np.random.default_rng(0)
    for _ in range(200):
        a, b = np.arange(rng.integers(1, 40)), np.arange(100, 100 + rng.integers(1, 40))
        ta, tb = truncate_pair(a, b, 30, rng)
        assert len(ta) + len(tb) == min(30, len(a) + len(b)) and len(ta) >= 1 and len(tb) >= 1
        assert contiguous(ta) and contiguous(tb)  # a slice: tokens leave from the ends only
        if len(a) + len(b) > 30:
            assert abs(len(ta) - len(tb)) <= max(0, abs(len(a) - len(b)) - (len(a) + len(b) - 30)) + 1


@pytest.mark.parametrize("name", ["full-sentences", "doc-sentences"])
def test_packed_formats_cover_the_corpus(toks, data, name):
    obj = get_objective("mlm")(toks["roberta"], 48, input_format=name, mask_prob=0.0)
    exs = examples(obj, data)
    assert (obj.example_lengths(data) == [len(e["input_ids"]) for e in exs]).all()
    stream, seps = [], 0
    for ex in exs:
        ids = ex["input_ids"]
        assert len(ids) <= 48 and ids[0] == 0 and ids[-1] == 2
        body = ids[1:-1]
        docs = [doc_of(data, t) for t in body[body >= FIRST]]
        n_docs = len(set(docs))
        assert (body < FIRST).sum() == n_docs - 1  # one separator per document boundary
        if name == "doc-sentences":
            assert n_docs == 1
        seps += n_docs - 1
        stream += body[body >= FIRST].tolist()
    assert stream == (data.tokens.astype(int)).tolist()  # every token once, in order
    if name == "full-sentences":
        assert seps > 0


def test_packing_keeps_sentences_whole(toks, data):
    obj = get_objective("mlm")(toks["bert"], 64, input_format="full-sentences", mask_prob=0.0)
    starts = set((data.sent_offsets[:-1] + FIRST).tolist())
    for ex in examples(obj, data):
        first = ex["input_ids"][1]
        assert first in starts  # sentences are at most 29 tokens: none needs splitting


def test_doc_sentences_batches_by_tokens(toks, data):
    obj = get_objective("mlm")(toks["bert"], 48, input_format="doc-sentences")
    lengths = obj.example_lengths(data)
    assert obj.variable_length and lengths.min() < 48 // 2
    batches = batches_by_tokens(range(len(lengths)), lengths, 4 * 48)
    sizes = [lengths[b].sum() for b in batches]
    assert max(sizes) <= 4 * 48 and sum(len(b) for b in batches) == len(lengths)
    assert max(len(b) for b in batches) > 4  # short examples make bigger batches


def test_nsp_pairs(toks, data):
    obj = get_objective("mlm+nsp")(toks["bert"], 40, mask_prob=0.0, short_seq_prob=0.0)
    exs = examples(obj, data) * 1 + examples(obj, data, seed=1)
    labels = np.array([int(e["next_sentence_label"]) for e in exs])
    assert abs(labels.sum() - len(labels) / 2) < 4 * math.sqrt(len(labels) / 4)
    for ex, label in zip(exs, labels):
        ids = ex["input_ids"]
        assert len(ids) <= 40 and ids[0] == toks["bert"].cls_id
        assert (ex["token_type_ids"] == np.r_[np.zeros(len(ids) - len(split_pair(ex, None)[1]) - 1), np.ones(
            len(split_pair(ex, None)[1]) + 1)]).all()
        a, b = split_pair(ex, None)
        assert len(a) and len(b) and contiguous(a) and contiguous(b)
        same = doc_of(data, a[0]) == doc_of(data, b[0])
        if label == 0:  # IsNext: B continues A in the same document (modulo truncation)
            assert same and b[0] > a[-1]
        else:
            assert not same


def test_sop_pairs_stay_in_one_document(toks):
    data = corpus(np.random.default_rng(1), n_docs=60, sents=(1, 2), length=(2, 20))  # one sentence each
    obj = get_objective("mlm+sop")(toks["albert"], 32, mask_prob=0.0)
    exs = examples(obj, data)
    assert len(exs) == data.n_docs
    labels = np.array([int(e["sentence_order_label"]) for e in exs])
    assert 0 < labels.sum() < len(labels)
    for ex, label in zip(exs, labels):
        a, b = split_pair(ex, None)
        assert doc_of(data, a[0]) == doc_of(data, b[0])  # never a random B: SOP stays SOP
        assert (b[0] > a[-1]) == (label == 0)  # label 1 = swapped


def test_sop_label_balance(toks, data):
    obj = get_objective("sop")(toks["albert"], 40)
    labels = np.array([int(e["sentence_order_label"]) for s in range(3) for e in examples(obj, data, seed=s)])
    assert abs(labels.sum() - len(labels) / 2) < 4 * math.sqrt(len(labels) / 4)


def test_short_seq_prob_shortens_segments(toks):
    data = corpus(np.random.default_rng(2), n_docs=30, sents=(10, 20), length=(5, 10))
    long = get_objective("nsp")(toks["bert"], 64, short_seq_prob=0.0)
    short = get_objective("nsp")(toks["bert"], 64, short_seq_prob=1.0)
    mean = lambda obj: np.mean([len(e["input_ids"]) for e in examples(obj, data)])  # noqa: E731
    assert mean(short) < 0.75 * mean(long)
    assert mean(long) > 0.8 * 64


def test_sentence_pairs_are_single_sentences(toks, data):
    obj = get_objective("mlm+nsp")(toks["bert"], 64, input_format="sentence-pair", mask_prob=0.0)
    starts = set((data.sent_offsets + FIRST).tolist())
    for ex in examples(obj, data):
        a, b = split_pair(ex, None)
        assert a[0] in starts and a[-1] + 1 in starts and b[0] in starts and b[-1] + 1 in starts
        if int(ex["next_sentence_label"]) == 0:
            assert b[0] == a[-1] + 1


def test_pair_objective_masks_both_segments(toks, data):
    obj = get_objective("mlm+nsp")(toks["bert"], 64)
    batch = obj.collate(examples(obj, data, n=8))
    assert set(batch) == {"input_ids", "attention_mask", "token_type_ids", "labels", "next_sentence_label"}
    sel = batch["labels"] != -100
    assert sel.any() and (batch["token_type_ids"][sel] == 1).any() and (batch["token_type_ids"][sel] == 0).any()
    assert batch["next_sentence_label"].shape == (8,)


def test_roberta_padding_uses_its_pad_id(toks, data):
    obj = get_objective("mlm")(toks["roberta"], 48, input_format="doc-sentences")
    batch = obj.collate(examples(obj, data, n=6))
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 1).all()


def test_nsp_needs_two_documents(toks):
    data = corpus(np.random.default_rng(3), n_docs=1, sents=(3, 4))
    with pytest.raises(PlmlabError, match="two documents"):
        get_objective("mlm+nsp")(toks["bert"], 32).num_examples(data)


def test_metrics(toks, data):
    import torch

    from plmlab.models import ModelOutput

    obj = get_objective("mlm+nsp")(toks["bert"], 64)
    batch = obj.collate(examples(obj, data, n=4))
    logits = torch.nn.functional.one_hot(batch["labels"].clamp(min=0), int(batch["labels"].max()) + 1).float()
    pair = torch.nn.functional.one_hot(1 - batch["next_sentence_label"], 2).float()  # all wrong
    m = obj.metrics(batch, ModelOutput(logits=logits, pair_logits=pair))
    assert m["mlm_accuracy"].value == 1.0 and m["nsp_accuracy"].value == 0.0
    assert m["mlm_accuracy"].count == int((batch["labels"] != -100).sum()) and m["nsp_accuracy"].count == 4
