"""MLM masking: selection rate, 80/10/10, whole words, n-gram lengths, static vs dynamic.

Statistical checks use fixed seeds and tolerances of several binomial standard deviations,
so they pass for a correct implementation whatever the seed, and fail for a biased one.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.objectives import IGNORE_INDEX, get_objective
from plmlab.objectives.mlm import Masker, Masking
from plmlab.tokenizers import train_tokenizer

TEXT = ("The encoder reads the whole sentence at once. Unbelievably, tokenization splits rare words "
        "into pieces. Masked language modelling predicts hidden tokens from both sides. "
        "Whole word masking hides every piece of a word together. Documents are split into sentences.")


@pytest.fixture(scope="module")
def tokenizers():
    # small vocabularies over varied text: the long words of TEXT split into several pieces
    corpus = [TEXT] + [f"the {w} sat on a mat near {v} and it ran to the park" for w in ("cat", "dog", "bird", "fox")
                       for v in ("trees", "rivers", "stones", "hills")]
    return {s: train_tokenizer(corpus, s, vocab_size=150, min_frequency=1) for s in ("bert", "roberta", "albert")}


def random_sequence(tok, rng, n=100) -> np.ndarray:
    masker = Masker(tok, Masking())
    body = rng.choice(masker.random_pool, size=n)
    return np.concatenate(([tok.cls_id], body, [tok.sep_id], [tok.pad_id] * 5)).astype(np.int64)


def sigma(n: int, p: float) -> float:
    return math.sqrt(n * p * (1 - p))


def test_selects_round_15_percent_never_specials(tokenizers):
    tok = tokenizers["bert"]
    masker, rng = Masker(tok, Masking()), np.random.default_rng(0)
    counts = np.zeros(108)
    for _ in range(3000):
        ids = random_sequence(tok, rng)
        chosen, _ = masker.select(ids, rng)
        assert len(chosen) == round(0.15 * 100) and len(set(chosen.tolist())) == len(chosen)
        assert not np.isin(ids[chosen], list(tok.special_ids.values())).any()
        counts[chosen] += 1
    assert counts[0] == 0 and counts[101:].sum() == 0  # [CLS], [SEP], padding
    # every real position is selected with probability 0.15 (uniform choice)
    expected, s = 3000 * 0.15, sigma(3000, 0.15)
    assert np.abs(counts[1:101] - expected).max() < 5 * s


def test_replacement_80_10_10(tokenizers):
    tok = tokenizers["bert"]
    masker, rng = Masker(tok, Masking()), np.random.default_rng(1)
    kinds, n = np.zeros(3), 0
    for _ in range(3000):
        ids = random_sequence(tok, rng)
        out = masker.corrupt(ids, rng)
        sel = out["labels"] != IGNORE_INDEX
        assert (out["labels"][sel] == ids[sel]).all() and (out["input_ids"][~sel] == ids[~sel]).all()
        got = out["input_ids"][sel]
        assert not np.isin(got, [i for i in tok.special_ids.values() if i != tok.mask_id]).any()
        kinds += [(got == tok.mask_id).sum(), ((got != tok.mask_id) & (got != ids[sel])).sum(), (got == ids[sel]).sum()]
        n += sel.sum()
    pool = len(masker.random_pool)  # a random draw equals the original with probability 1/pool
    expected = [0.8, 0.1 * (1 - 1 / pool), 0.1 + 0.1 / pool]
    for k, p in zip(kinds, expected):
        assert abs(k - n * p) < 4 * sigma(n, p), (kinds / n, expected)


def test_replace_probs_are_configurable(tokenizers):
    tok = tokenizers["bert"]
    masker, rng = Masker(tok, Masking(mask_prob=0.3, replace_probs=(0.5, 0.0, 0.5))), np.random.default_rng(2)
    masked = total = 0
    for _ in range(500):
        out = masker.corrupt(random_sequence(tok, rng), rng)
        sel = out["labels"] != IGNORE_INDEX
        assert sel.sum() == 30
        masked += (out["input_ids"][sel] == tok.mask_id).sum()
        total += sel.sum()
    assert abs(masked - total * 0.5) < 4 * sigma(total, 0.5)


@pytest.mark.parametrize("style", ["bert", "roberta", "albert"])
def test_whole_words_are_never_split(tokenizers, style):
    tok = tokenizers[style]
    masker, rng = Masker(tok, Masking(whole_word=True, mask_prob=0.3)), np.random.default_rng(3)
    ids = np.asarray(tok.encode(TEXT), dtype=np.int64)
    starts, ends = masker.units(ids, np.flatnonzero(masker.candidates(ids)))
    assert (ends - starts > 1).any(), "the text should contain multi-piece words"
    for _ in range(300):
        chosen, _ = masker.select(ids, rng)
        sel = np.zeros(len(ids), dtype=bool)
        sel[chosen] = True
        for s, e in zip(starts, ends):
            assert sel[s:e].all() or not sel[s:e].any(), tok.convert_ids_to_tokens(ids[s:e])
        n_cand = masker.candidates(ids).sum()
        assert 0 < len(chosen) <= round(0.3 * n_cand)


def test_wordpiece_words_follow_double_hash(tokenizers):
    tok = tokenizers["bert"]
    masker = Masker(tok, Masking(whole_word=True))
    ids = np.asarray(tok.encode("unbelievably tokenization"), dtype=np.int64)
    starts, ends = masker.units(ids, np.flatnonzero(masker.candidates(ids)))
    words = ["".join(t.removeprefix("##") for t in tok.convert_ids_to_tokens(ids[s:e])) for s, e in zip(starts, ends)]
    assert words == ["unbelievably", "tokenization"]


def test_ngram_lengths_follow_one_over_n(tokenizers):
    tok = tokenizers["bert"]
    masker, rng = Masker(tok, Masking(ngram=3)), np.random.default_rng(4)
    counts = np.zeros(3)
    for _ in range(800):
        ids = random_sequence(tok, rng, n=400)
        chosen, spans = masker.select(ids, rng)
        assert len(chosen) == 60 and sum(spans) == 60
        for m in spans[:-1]:  # the last span may be shortened to fit the budget
            counts[m - 1] += 1
    n, p = counts.sum(), np.array([6, 3, 2]) / 11
    for c, q in zip(counts, p):
        assert abs(c - n * q) < 4 * sigma(n, q), (counts / n, p)


def test_ngram_spans_are_contiguous_and_skip_specials(tokenizers):
    tok = tokenizers["bert"]
    masker, rng = Masker(tok, Masking(ngram=3, mask_prob=0.4)), np.random.default_rng(5)
    ids = np.concatenate(([tok.cls_id], rng.choice(masker.random_pool, 10), [tok.sep_id],
                          rng.choice(masker.random_pool, 10), [tok.sep_id]))
    for _ in range(200):
        chosen, spans = masker.select(ids, rng)
        assert not np.isin(chosen, [0, 11, 22]).any() and sum(spans) == len(chosen) == 8


def test_static_masking_repeats_every_copies_epochs(tokenizers):
    tok = tokenizers["roberta"]
    ids = tok.encode(TEXT, add_special_tokens=False)
    static = get_objective("mlm")(tok, 128, masking="static", static_copies=3)
    dynamic = get_objective("mlm")(tok, 128)
    ex = lambda obj, epoch: obj.from_ids(ids, obj.rng_for(7, epoch, 5))["input_ids"].tolist()  # noqa: E731
    assert ex(static, 0) == ex(static, 3) == ex(static, 6)
    assert ex(static, 0) != ex(static, 1) != ex(static, 2)
    assert ex(dynamic, 0) != ex(dynamic, 3)
    assert ex(dynamic, 2) == ex(dynamic, 2)  # a pure function of (seed, epoch, index)


def test_bad_options_are_clear_errors(tokenizers):
    tok = tokenizers["bert"]
    with pytest.raises(PlmlabError, match="replace_probs"):
        get_objective("mlm")(tok, 64, replace_probs=(0.8, 0.1, 0.2))
    with pytest.raises(PlmlabError, match="mask_prob"):
        get_objective("mlm")(tok, 64, mask_prob=1.5)
    with pytest.raises(PlmlabError, match="unknown option"):
        get_objective("mlm")(tok, 64, mask_probability=0.2)
    with pytest.raises(PlmlabError, match="masking"):
        get_objective("mlm")(tok, 64, masking="sometimes")
    with pytest.raises(PlmlabError, match="input format"):
        get_objective("mlm+nsp")(tok, 64, input_format="full-sentences")


def test_objective_cli_json(tokenizers, tmp_path, capsys):
    tokenizers["bert"].save(tmp_path)
    code = main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path), "--json",
                 "--set", "whole_word=true", "--seed", "3"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    ids, labels, inputs = out["original_ids"], np.array(out["labels"]), np.array(out["input_ids"])
    assert inputs[0] == out["cls_token_id"] and inputs[-1] == out["sep_token_id"]
    sel = labels != IGNORE_INDEX
    assert (labels[sel] == np.array(ids)[sel[1:-1]]).all()  # labels are the original ids
    assert out["masked_positions"] == np.flatnonzero(sel).tolist()
    assert len(out["replacement"]) == sel.sum() and out["mask_token_id"] == tokenizers["bert"].mask_id


def test_objective_cli_reports_the_selected_fraction_as_mask_rate(tokenizers, tmp_path, capsys):
    """mask_rate is selected / candidates of the text before corruption: exactly round(0.15 n) / n
    (the [MASK]ed positions were candidates too; counting them out gave ~0.17 for 15 %)."""
    tokenizers["bert"].save(tmp_path)
    for seed in range(3):
        assert main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path), "--json",
                     "--seed", str(seed)]) == 0
        out = json.loads(capsys.readouterr().out)
        n = len(out["original_ids"])  # every text token is a candidate; [CLS] / [SEP] are not
        selected = len(out["masked_positions"])
        assert selected == round(0.15 * n)
        assert "mask" in out["replacement"]  # some positions now hold [MASK]: the case that was miscounted
        assert out["mask_rate"] == round(selected / n, 4)
