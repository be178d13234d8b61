"""BART's denoising objectives: statistics over fixed seeds (infilling's Poisson span lengths with
their zero-length spans, the masked fraction), what each noising function may and may not do,
round trips (the target is the original text), the objective on token data, options and fits,
and the `plmlab objective bart` view."""

import itertools
import json
import math

import numpy as np
import pytest

from plmlab.data.shards import TokenData
from plmlab.errors import PlmlabError
from plmlab.objectives import example_rng, get_objective
from plmlab.objectives.bart import (
    BartDenoising, delete_tokens, infill_spans, mask_tokens, permute_sentences, rotate, span_lengths,
)
from plmlab.presets import get_preset
from plmlab.tokenizers import train_tokenizer
from test_generation import run_cli  # `plmlab ...` in process (a subprocess adds only its start-up)

MASK = 4
TEXTS = ["The quick brown fox jumps over the lazy dog. It ran near the river bank! Was it tired?",
         "A function returns a value to its caller. Unless it raises an exception first.",
         "Lists, tuples and dictionaries are containers. Sets are too. Strings are sequences."] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, "roberta", vocab_size=400)


def _poisson(k: int, lam: float = 3.0) -> float:
    return math.exp(-lam) * lam ** k / math.factorial(k)


# --- text infilling ------------------------------------------------------------------------------
def test_infilling_span_lengths_follow_the_poisson_law_with_zero_length_spans():
    """Span lengths ~ Poisson(3): length 0 (an inserted <mask>) with probability e^-3 = 0.0498.
    The last span of each example is cut to hit the budget, so it is left out of the law."""
    lengths = []
    for seed in range(400):
        drawn = span_lengths(200, 0.3, 3.0, np.random.default_rng(seed))
        assert int(drawn.sum()) == 60  # exactly round(0.3 * 200) tokens covered
        lengths += drawn[:-1].tolist()
    lengths = np.asarray(lengths)
    assert len(lengths) > 7000
    for k in range(7):  # binomial standard error of each share < 0.006 here
        assert abs(float(np.mean(lengths == k)) - _poisson(k)) < 0.012, k
    assert abs(float(np.mean(lengths == 0)) - math.exp(-3)) < 0.01
    assert abs(float(lengths.mean()) - 3.0) < 0.08


def test_infilling_replaces_each_span_by_one_mask_and_masks_thirty_percent():
    ids = np.arange(10, 210)  # 200 distinct tokens
    masked, zero_spans, spans = 0, 0, 0
    for seed in range(200):
        out, starts, lengths = infill_spans(ids, 0.3, 3.0, MASK, np.random.default_rng(seed))
        rebuilt, pos = [], 0  # the output rebuilt from the original and the reported spans
        for s, n in zip(starts.tolist(), lengths.tolist()):
            rebuilt += ids[pos:s].tolist() + [MASK]
            pos = s + n
        assert out.tolist() == rebuilt + ids[pos:].tolist()
        assert int((out == MASK).sum()) == len(lengths)  # ONE mask per span, zero-length ones included
        assert all(b > a + n for a, b, n in zip(starts[:-1], starts[1:], lengths[:-1]))  # spans never touch
        kept = out[out != MASK]
        assert np.all(np.diff(kept) > 0)  # the kept tokens keep their order
        masked += len(ids) - len(kept)
        zero_spans, spans = zero_spans + int((lengths == 0).sum()), spans + len(lengths)
    assert abs(masked / (200 * len(ids)) - 0.3) < 0.005
    assert 0.02 < zero_spans / spans < 0.08  # zero-length spans do appear (e^-3 of the spans)


def test_infilling_on_short_texts_never_fails():
    for n in range(1, 12):
        for seed in range(20):
            out, starts, lengths = infill_spans(np.arange(10, 10 + n), 0.9, 3.0, MASK, np.random.default_rng(seed))
            assert int((out == MASK).sum()) == len(lengths) and int(lengths.sum()) <= n


# --- masking, deletion, permutation, rotation ------------------------------------------------------
def test_token_masking_replaces_exactly_the_ratio_in_place():
    ids = np.arange(10, 110)
    out = mask_tokens(ids, 0.3, MASK, np.random.default_rng(0))
    assert len(out) == len(ids) and int((out == MASK).sum()) == 30
    assert np.array_equal(out[out != MASK], ids[out != MASK])


def test_token_deletion_removes_tokens_without_a_mask():
    ids = np.arange(10, 110)
    for seed in range(20):
        out = delete_tokens(ids, 0.3, np.random.default_rng(seed))
        assert len(out) == 70 and MASK not in out
        assert set(out.tolist()) <= set(ids.tolist()) and np.all(np.diff(out) > 0)  # a subsequence


def test_permutation_is_a_permutation_of_the_sentences():
    sentences = [np.arange(10 * i, 10 * i + 3 + i) for i in range(1, 7)]
    orders = set()
    for seed in range(50):
        out = permute_sentences(sentences, np.random.default_rng(seed))
        assert sorted(s.tolist() for s in out) == sorted(s.tolist() for s in sentences)
        orders.add(tuple(int(s[0]) for s in out))
    assert len(orders) > 30  # really shuffled, not a fixed reordering


def test_rotation_is_a_rotation_with_uniform_starts():
    ids = np.arange(10, 20)
    starts = []
    for seed in range(500):
        out = rotate(ids, np.random.default_rng(seed))
        k = int(out[0]) - 10
        assert np.array_equal(out, np.roll(ids, -k))
        starts.append(k)
    counts = np.bincount(starts, minlength=10)
    assert counts.min() > 25 and counts.max() < 75  # 50 expected each


# --- the objective --------------------------------------------------------------------------------
def test_round_trip_the_target_is_the_input_text(tok):
    text = TEXTS[0]
    ids = tok.encode(text, add_special_tokens=False)
    for noise in ("infilling,permutation", "masking", "deletion", "rotation", "masking,deletion,infilling,rotation"):
        obj = BartDenoising(tok, 128, noise=noise)
        ex = obj.from_ids(ids, np.random.default_rng(1))
        labels, inputs = ex["labels"].tolist(), ex["input_ids"].tolist()
        assert labels == [tok.bos_id] + ids + [tok.eos_id]
        assert tok.decode(labels) == text
        assert inputs[0] == tok.bos_id and inputs[-1] == tok.eos_id and inputs != labels


def test_permutation_alone_keeps_the_tokens_and_moves_whole_sentences(tok):
    ids = tok.encode(TEXTS[0], add_special_tokens=False)
    obj = BartDenoising(tok, 128, noise="permutation")
    sentences = [s.tolist() for s in obj.sentences_of(ids)]
    assert len(sentences) == 3 and sum(sentences, []) == ids  # the text's three sentences
    seen = set()
    for seed in range(12):
        body = obj.from_ids(ids, np.random.default_rng(seed))["input_ids"].tolist()[1:-1]
        orders = [p for p in itertools.permutations(sentences) if sum(p, []) == body]
        assert orders, body
        seen.add(body[0])
    assert len(seen) > 1


def _token_data(tok):
    """Documents of sentences, each sentence tokenized on its own (as the corpus pipeline does)."""
    docs = [[tok.encode(s, add_special_tokens=False) for s in t.replace("! ", "!|").replace(". ", ".|")
             .replace("? ", "?|").split("|")] for t in TEXTS[:9]]
    sents = [s for d in docs for s in d]
    sent_offsets = np.cumsum([0] + [len(s) for s in sents])
    doc_sents = np.cumsum([0] + [len(d) for d in docs])
    tokens = np.concatenate([np.asarray(s) for s in sents]).astype(np.uint16)
    return TokenData(tokens, sent_offsets[doc_sents], sent_offsets, doc_sents, np.arange(len(docs))), docs


def test_examples_are_whole_sentences_of_one_document(tok):
    data, docs = _token_data(tok)
    obj = get_objective("bart")(tok, 24)
    rebuilt, n = [], obj.num_examples(data)
    for i in range(n):
        ex = obj.example(data, i, example_rng(0, 0, i))
        assert len(ex["labels"]) <= 24 and ex["labels"][0] == tok.bos_id and ex["labels"][-1] == tok.eos_id
        rebuilt += ex["labels"][1:-1].tolist()
        again = obj.example(data, i, example_rng(0, 0, i))
        assert all(np.array_equal(ex[k], again[k]) for k in ex)  # a pure function of (seed, epoch, index)
    assert rebuilt == [t for d in docs for s in d for t in s]  # in order, nothing lost
    batch = obj.collate([obj.example(data, i, example_rng(0, 0, i)) for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "labels"}


def test_trains_a_tiny_bart_step(tok):
    import plmlab

    data, _ = _token_data(tok)
    obj = get_objective("bart")(tok, 32)
    model = plmlab.build_model("bart-tiny", vocab_size=len(tok))
    batch = obj.collate([obj.example(data, i, example_rng(0, 0, i)) for i in range(4)])
    loss = model(**batch).loss
    value = float(loss.detach())
    assert math.isfinite(value) and abs(value - math.log(len(tok))) < 1.0
    loss.backward()
    assert model.embed.tokens.weight.grad is not None and model.decoder_embed.positions.weight.grad is not None


def test_options_fits_and_bad_inputs(tok):
    with pytest.raises(PlmlabError, match="noise must be a comma-separated list"):
        BartDenoising(tok, 64, noise="infilling,shuffle")
    with pytest.raises(PlmlabError, match="mask_ratio"):
        BartDenoising(tok, 64, mask_ratio=1.5)
    with pytest.raises(PlmlabError, match="mask token"):
        BartDenoising(train_tokenizer(TEXTS, "t5", vocab_size=300), 64)
    with pytest.raises(PlmlabError, match="at most"):
        BartDenoising(tok, 8).from_ids(list(range(10, 30)), np.random.default_rng(0))
    assert len(BartDenoising(tok, 8, truncate=True).from_ids(list(range(10, 30)), np.random.default_rng(0))["labels"]) == 8
    BartDenoising.check_fits(get_preset("bart-tiny"))
    for name in ("t5-tiny", "gpt-tiny", "bert-tiny"):
        with pytest.raises(PlmlabError, match="e.g. bart-tiny"):
            BartDenoising.check_fits(get_preset(name))


def test_objective_cli_shows_each_noise():
    base = ["objective", "bart", "--json", "--text", TEXTS[0]]
    code, stdout, stderr = run_cli(base + ["--set", "noise=infilling,permutation"])
    assert code == 0, stderr
    view = json.loads(stdout)
    assert view["noise"] == ["infilling", "permutation"] and view["mask_token_id"] in view["input_ids"]
    assert view["labels"][1:-1] == view["original_ids"]
    code, _, stderr = run_cli(base + ["--set", "noise=shuffle"])
    assert code == 2 and stderr.count("\n") == 1 and "plmlab: error: objective bart" in stderr
