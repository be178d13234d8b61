"""TLM (XLM section 3.3) on a tiny synthetic parallel file: the layout (positions reset, language
ids, </s> around each sentence, masking over both halves) with fixed seeds, the masking rate
and 80/10/10 split, the pair reader's errors, the `plmlab objective` view and a pretraining run."""

from __future__ import annotations

import json

import numpy as np
import pytest

from plmlab.cli import main
from plmlab.data import build_token_data, read_corpus
from plmlab.data.pairs import read_pairs
from plmlab.errors import PlmlabError
from plmlab.objectives import IGNORE_INDEX, example_rng, get_objective
from plmlab.objectives.tlm import truncate_pair
from plmlab.objectives.view import pairs_view
from plmlab.tokenizers import train_tokenizer

EN = ["cat", "dog", "house", "tree", "water", "bread", "child", "book"]
FR = ["chat", "chien", "maison", "arbre", "eau", "pain", "enfant", "livre"]


def write_pairs(path, n=40, langs=("en", "fr")):
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        for _ in range(n):
            a, b = rng.integers(8, size=2)
            f.write(json.dumps({"src": f"the {EN[a]} sees the {EN[b]} near the old {EN[b]}.",
                                "tgt": f"le {FR[a]} voit le {FR[b]} près du vieux {FR[b]}.",
                                "src_lang": langs[0], "tgt_lang": langs[1]}) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tlm")
    path = write_pairs(folder / "pairs.jsonl")
    documents = read_corpus([str(path)])
    tok = train_tokenizer([s for d in documents for s in d], "roberta", vocab_size=200, min_frequency=1)
    train, val = build_token_data(documents, tok, cache_dir=folder / "cache")
    return path, documents, tok, train, val


def test_pairs_are_four_sentence_documents(corpus):
    path, documents, *_ = corpus
    pair = read_pairs(path)[0]
    assert documents[0] == [pair.src_lang, pair.src, pair.tgt_lang, pair.tgt] == ["en", pair.src, "fr", pair.tgt]


def test_layout_positions_reset_languages_and_masking_over_both_halves(corpus):
    _, _, tok, train, _ = corpus
    tlm = get_objective("tlm")(tok, 128, languages=["fr", "en"])
    assert tlm.num_examples(train) == train.n_docs
    both = 0
    for index in range(train.n_docs):
        ex = tlm.example(train, index, example_rng(7, 0, index))
        _, src, _, tgt = train.sentences(index)
        a, b = len(src) + 2, len(tgt) + 2
        assert ex["position_ids"].tolist() == list(range(a)) + list(range(b))  # reset for the second sentence
        assert ex["language_ids"].tolist() == [1] * a + [0] * b  # en = 1, fr = 0 in the given table
        original = np.concatenate([[tok.eos_id], src, [tok.eos_id], [tok.eos_id], tgt, [tok.eos_id]])
        labels, inputs = ex["labels"], ex["input_ids"]
        sel = labels != IGNORE_INDEX
        assert (labels[sel] == original[sel]).all() and (inputs[~sel] == original[~sel]).all()
        assert not sel[[0, a - 1, a, a + b - 1]].any()  # the </s> around each sentence are never masked
        assert sel.sum() == round(0.15 * (a + b - 4))
        both += bool(sel[:a].any() and sel[a:].any())
    assert both >= train.n_docs // 4  # masks fall in both languages of one input
    again = tlm.example(train, 3, example_rng(7, 0, 3))
    assert again["input_ids"].tolist() == tlm.example(train, 3, example_rng(7, 0, 3))["input_ids"].tolist()


def test_masking_rate_and_replacement_split(corpus):
    _, _, tok, train, _ = corpus
    tlm = get_objective("tlm")(tok, 128, mask_prob=0.3)
    selected = candidates = 0
    kinds = np.zeros(3)
    masked_target = masked = tokens_target = tokens = 0
    for seed in range(30):
        for index in range(train.n_docs):
            ex = tlm.example(train, index, example_rng(seed, 0, index))
            sel = ex["labels"] != IGNORE_INDEX
            second = int(np.flatnonzero(ex["position_ids"] == 0)[1])
            cand = ex["input_ids"] != tok.eos_id
            cand[sel] = True
            selected, candidates = selected + sel.sum(), candidates + cand.sum()
            masked, masked_target = masked + sel.sum(), masked_target + sel[second:].sum()
            tokens, tokens_target = tokens + cand.sum(), tokens_target + cand[second:].sum()
            got = ex["input_ids"][sel]
            kinds += [(got == tok.mask_id).sum(), ((got != tok.mask_id) & (got != ex["labels"][sel])).sum(),
                      (got == ex["labels"][sel]).sum()]
    assert abs(selected / candidates - 0.3) < 0.01
    share = kinds / kinds.sum()
    # a random replacement equal to the original counts as unchanged: ~0.1 / vocab more
    assert abs(share[0] - 0.8) < 0.02 and abs(share[1] - 0.1) < 0.02 and abs(share[2] - 0.1) < 0.02
    assert abs(masked_target / masked - tokens_target / tokens) < 0.03  # both halves masked alike


def test_language_table_default_and_unknown_language(corpus):
    _, _, tok, train, val = corpus
    tlm = get_objective("tlm")(tok, 64)
    tlm.num_examples(val)
    assert tlm.languages == ["en", "fr"]  # sorted names found in the data
    fixed = get_objective("tlm")(tok, 64, languages=["en", "de"])
    with pytest.raises(PlmlabError, match="unknown language 'fr'"):
        fixed.num_examples(train)


def test_long_pairs_are_truncated_to_seq_len(corpus):
    _, _, tok, *_ = corpus
    assert truncate_pair(list(range(10)), list(range(3)), 8) == (list(range(5)), list(range(3)))
    ex = get_objective("tlm")(tok, 12, src_lang="en", tgt_lang="fr").from_ids(list(range(5, 25)), example_rng(0, 0, 0),
                                                                                list(range(5, 15)))
    assert len(ex["input_ids"]) == 12 and ex["position_ids"].tolist() == list(range(6)) * 2


def test_corpus_that_is_not_pairs_is_refused(tmp_path, corpus):
    _, _, tok, *_ = corpus
    docs = [["one sentence here.", "and another."], ["a third.", "a fourth one."], ["more.", "text."]]
    train, _ = build_token_data(docs, tok, cache_dir=tmp_path, val_fraction=0.0)
    with pytest.raises(PlmlabError, match="translation pairs"):
        get_objective("tlm")(tok, 64).num_examples(train)


@pytest.mark.parametrize("line, message", [
    ({"src": "a", "tgt": "b", "src_lang": "en"}, "missing field 'tgt_lang'"),
    ({"src": "a", "tgt": " ", "src_lang": "en", "tgt_lang": "fr"}, "empty field 'tgt'"),
    ({"src": "a", "tgt": "b", "src_lang": "en", "tgt_lang": 3}, "non-string field 'tgt_lang'"),
])
def test_bad_pair_lines_are_one_line(tmp_path, line, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"src": "x", "tgt": "y", "src_lang": "en", "tgt_lang": "fr"}) + "\n"
                    + json.dumps(line) + "\n")
    with pytest.raises(PlmlabError, match=f"bad.jsonl:2: {message}"):
        read_corpus([str(path)])
    with pytest.raises(PlmlabError, match=f"bad.jsonl:2: {message}"):
        read_pairs(path)


def test_objective_view_json(corpus, tmp_path, capsys):
    path, _, tok, *_ = corpus
    tok.save(tmp_path)
    assert main(["objective", "tlm", "--text", "the cat sees the dog.", "--text-b", "le chat voit le chien.",
                 "--set", "src_lang=en", "--set", "tgt_lang=fr", "--tokenizer", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n_a = len(out["original_ids"]) + 2
    assert out["position_ids"][n_a] == 0 and out["target_start"] == n_a
    assert out["language_ids"] == [0] * n_a + [1] * (len(out["original_ids_b"]) + 2)
    view = pairs_view(str(path), tok, seed=0, seq_len=64, index=1)
    assert view["languages"] == ["en", "fr"] and view["original_ids"] == tok.encode(read_pairs(path)[1].src,
                                                                                    add_special_tokens=False)
    assert main(["objective", "tlm", "--text", "the cat.", "--tokenizer", str(tmp_path), "--json"]) == 2
    assert "--text-b" in capsys.readouterr().err
    # --pairs: the file's first pair, exactly the library's view of it
    assert main(["objective", "tlm", "--pairs", str(path), "--tokenizer", str(tmp_path), "--seq-len", "64",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == pairs_view(str(path), tok, seed=0, seq_len=64)
    assert main(["objective", "mlm", "--pairs", str(path), "--tokenizer", str(tmp_path)]) == 2
    assert "--pairs is for the tlm objective" in capsys.readouterr().err


def test_pretrain_xlm_tiny_tlm_and_bad_input(tmp_path, capsys):
    path = write_pairs(tmp_path / "pairs.jsonl")
    args = ["pretrain", "--preset", "xlm-tiny", "--objective", "tlm", "--corpus", str(path), "--max-steps", "2",
            "--batch-size", "2", "--seq-len", "32"]
    assert main([*args, "--out", str(tmp_path / "run")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "r2"), "--objective-set", 'languages=["en","de"]']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # the set-up's status lines (corpus, data) come first: the pairs are read before their languages
    assert all(line.startswith("plmlab: ") for line in err) and "Traceback" not in "".join(err)
    assert [line for line in err if "error" in line] == [err[-1]] and "unknown language 'fr'" in err[-1]
    assert main([*args[:2], "bert-tiny", *args[3:], "--out", str(tmp_path / "r3")]) == 2
    assert "no language embeddings" in capsys.readouterr().err


def test_fits_language_embeddings_and_several_heads():
    from plmlab.families.fits import Fits
    from plmlab.presets import get_preset

    tlm = get_objective("tlm").fits
    assert tlm.problems(get_preset("xlm-tiny")) == []
    assert tlm.problems(get_preset("bert-tiny")) == ["head mlm", "no language embeddings"]
    either = Fits(arch="encoder", head=("mlm", "lm"))  # MLM on BERT's head or XLM's pred_layer
    assert either.problems(get_preset("xlm-tiny")) == either.problems(get_preset("bert-tiny")) == []
    assert either.wanted() == "an encoder with an MLM or LM head"
