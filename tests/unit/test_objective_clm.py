"""Causal LM objective: packed windows across documents, EOS between them, shifted labels."""

from __future__ import annotations

import numpy as np
import pytest

from plmlab.data.shards import TokenData
from plmlab.objectives import example_rng, get_objective

EOS = 0


class FakeTokenizer:
    eos_id = EOS


def token_data(docs: list[list[int]]) -> TokenData:
    offsets = np.cumsum([0] + [len(d) for d in docs]).astype(np.int64)
    return TokenData(tokens=np.array([t for d in docs for t in d], dtype=np.uint16), doc_offsets=offsets,
                     sent_offsets=offsets.copy(), doc_sents=np.arange(len(docs) + 1, dtype=np.int64),
                     doc_index=np.arange(len(docs), dtype=np.int64))


DOCS = [[11, 12, 13], [21, 22, 23, 24, 25], [31, 32], [41, 42, 43, 44]]
STREAM = [t for d in DOCS for t in d + [EOS]]  # 18 tokens


@pytest.mark.parametrize("seq_len", [1, 2, 4, 5, 17])
def test_windows_tile_the_stream_with_eos_between_documents(seq_len):
    obj = get_objective("clm")(FakeTokenizer(), seq_len)
    data = token_data(DOCS)
    n = obj.num_examples(data)
    assert n == (len(STREAM) - 1) // seq_len
    for i in range(n):
        ex = obj.example(data, i, example_rng(0, 0, i))
        window = STREAM[i * seq_len : i * seq_len + seq_len + 1]
        assert ex["input_ids"].tolist() == window[:-1]
        assert ex["labels"].tolist() == window[1:]  # already shifted: the model does not shift


def test_windows_cross_documents_and_labels_are_next_tokens():
    obj = get_objective("clm")(FakeTokenizer(), 4)
    ex = obj.example(token_data(DOCS), 0, example_rng(0, 0, 0))
    assert ex["input_ids"].tolist() == [11, 12, 13, EOS]
    assert ex["labels"].tolist() == [12, 13, EOS, 21]  # predicts the next document's first token


def test_too_little_text_gives_no_examples():
    obj = get_objective("clm")(FakeTokenizer(), 64)
    assert obj.num_examples(token_data(DOCS)) == 0


def test_examples_are_deterministic_and_collate_to_model_kwargs():
    obj = get_objective("clm")(FakeTokenizer(), 4)
    data = token_data(DOCS)
    a = obj.collate([obj.example(data, i, example_rng(1, 2, i)) for i in range(3)])
    b = obj.collate([obj.example(data, i, example_rng(9, 9, i)) for i in range(3)])
    assert set(a) == {"input_ids", "labels"}
    assert a["input_ids"].shape == (3, 4) and a["input_ids"].dtype.is_floating_point is False
    assert all((a[k] == b[k]).all() for k in a)  # CLM draws nothing from the generator
