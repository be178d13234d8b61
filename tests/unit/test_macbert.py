"""MacBERT masking (MLM as correction): word n-grams 40/30/20/10 %, 15 % of the words,
similar / random / kept 80/10/10 per word, similar words from a vectors file or the model's
input embeddings, and never a [MASK] token in the input.

Statistical checks use fixed seeds and tolerances of several binomial standard deviations.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from plmlab import build_model
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.objectives import IGNORE_INDEX, get_objective
from plmlab.objectives.macbert import MacbertMasker, nearest, read_vectors
from plmlab.objectives.mlm import MlmOptions
from plmlab.presets import get_preset
from plmlab.tokenizers import train_tokenizer

ANIMALS = ("cat", "dog", "bird", "fox")
PLACES = ("trees", "rivers", "stones", "hills")
TEXT = "the cat sat on a mat near trees and the dog ran to the hills while a bird watched the fox"


@pytest.fixture(scope="module")
def tok():
    corpus = [f"the {w} sat on a mat near {v} and it ran to the park" for w in ANIMALS for v in PLACES]
    corpus += ["Unbelievably, tokenization splits rare words into pieces. Whole word masking hides them."]
    return train_tokenizer(corpus, "bert", vocab_size=150, min_frequency=1)


@pytest.fixture
def vectors(tmp_path):
    """Animals close to each other, places close to each other, the two groups far apart."""
    lines = ["8 3"]
    for i, w in enumerate(ANIMALS):
        lines.append(f"{w} 1.0 {0.1 * i:.2f} 0.0")
    for i, w in enumerate(PLACES):
        lines.append(f"{w} 0.0 {0.1 * i:.2f} 1.0")
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def sequence(tok, rng, n_words=200) -> np.ndarray:
    words = rng.choice(list(ANIMALS + PLACES) + ["the", "unbelievably", "tokenization"], size=n_words)
    return np.asarray([tok.cls_id] + tok.encode(" ".join(words), add_special_tokens=False) + [tok.sep_id])


def masker(tok, **options) -> MacbertMasker:
    return MacbertMasker(tok, MlmOptions(masking="macbert", **options))


def sigma(n: int, p: float) -> float:
    return math.sqrt(n * p * (1 - p))


def attach_tiny_model(m: MacbertMasker, tok) -> torch.nn.Module:
    model = build_model("bert-tiny")
    model.embed.tokens = torch.nn.Embedding(tok.vocab_size, model.embed.tokens.embedding_dim)
    m.attach_model(model)
    return model


def unit_decisions(out: dict) -> np.ndarray:
    """The replacement applied to each selected word (read at the word's first token)."""
    where = {int(p): i for i, p in enumerate(out["masked_positions"])}
    return np.array([out["replacement"][where[int(s)]] for s, _ in out["units"]])


def test_ngram_lengths_40_30_20_10_over_15_percent_of_words(tok):
    m, rng = masker(tok), np.random.default_rng(0)
    lengths, rates = np.zeros(4), []
    for _ in range(400):
        ids = sequence(tok, rng)
        cand = np.flatnonzero(m.candidates(ids))
        n_words = len(m.word_units(ids, cand)[0])
        starts, ends, spans = m.select_units(ids, rng)
        assert len(starts) == round(0.15 * n_words)  # the budget counts words, and is always met
        rates.append(len(starts) / n_words)
        for n in spans[:-1]:  # the last span of a draw may be cut short by the budget
            lengths[n - 1] += 1
    n = lengths.sum()
    for k, p in zip(lengths, [0.4, 0.3, 0.2, 0.1]):
        assert abs(k - n * p) < 4 * sigma(n, p), lengths / n
    assert abs(np.mean(rates) - 0.15) < 0.005


def test_similar_random_kept_80_10_10_and_never_a_mask_token(tok):
    m, rng = masker(tok), np.random.default_rng(1)
    attach_tiny_model(m, tok)  # every piece has neighbours: a similar word always exists
    counts = np.zeros(3)
    for _ in range(300):
        ids = sequence(tok, rng)
        out = m.corrupt(ids, rng)
        assert tok.mask_id not in out["input_ids"]
        sel = out["labels"] != IGNORE_INDEX
        assert (out["labels"][sel] == ids[sel]).all() and (out["input_ids"][~sel] == ids[~sel]).all()
        counts += np.bincount(unit_decisions(out), minlength=3)
    n = counts.sum()
    for k, p in zip(counts, [0.8, 0.1, 0.1]):
        assert abs(k - n * p) < 4 * sigma(n, p), counts / n


def test_no_mask_token_for_any_source_or_rates(tok, vectors):
    rng = np.random.default_rng(2)
    for options in ({}, {"similar_words": str(vectors)}, {"replace_probs": (1.0, 0.0, 0.0), "mask_prob": 0.5}):
        m = masker(tok, **options)
        for _ in range(100):
            assert tok.mask_id not in m.corrupt(sequence(tok, rng, 60), rng)["input_ids"]


def test_similar_words_come_from_the_vectors_file(tok, vectors):
    m, rng = masker(tok, similar_words=str(vectors), similar_top_k=3, replace_probs=(1.0, 0.0, 0.0)), \
        np.random.default_rng(3)
    ids_of = {w: tuple(tok.encode(" " + w, add_special_tokens=False)) for w in ANIMALS + PLACES}
    group = {ids: set(ANIMALS if w in ANIMALS else PLACES) - {w} for w, ids in ids_of.items()}
    seen = 0
    for _ in range(100):
        ids = sequence(tok, rng, 40)
        out = m.corrupt(ids, rng)
        for (s, e), how in zip(out["units"], unit_decisions(out)):
            word = tuple(ids[s:e].tolist())
            if word in group:  # a word of the file: replaced by one of its neighbours in its own group
                assert how == 0
                new = tuple(out["input_ids"][s:e].tolist())
                assert new in {ids_of[w] for w in group[word]}
                seen += 1
            else:  # not in the file: no similar word, so a random one
                assert how == 1
    assert seen > 50


def test_embedding_neighbours_are_the_cosine_nearest_and_refresh(tok):
    m = masker(tok, similar_top_k=1, replace_probs=(1.0, 0.0, 0.0), similar_refresh=1)
    model = attach_tiny_model(m, tok)
    ids, rng = sequence(tok, np.random.default_rng(4), 30), np.random.default_rng(5)

    def expected(weight: torch.Tensor, token: int) -> int:
        w = torch.nn.functional.normalize(weight.detach(), dim=1)  # (V, E)
        sims = w @ w[token]  # (V,)
        same = torch.from_numpy(m.word_start == m.word_start[token])
        sims[~same | torch.from_numpy(np.isin(np.arange(len(sims)), m.special))] = -torch.inf
        sims[token] = -torch.inf
        return int(sims.argmax())

    for _ in range(2):
        out = m.corrupt(ids, rng)
        for p in out["masked_positions"]:
            assert out["input_ids"][p] == expected(model.embed.tokens.weight, int(ids[p]))
        with torch.no_grad():
            model.embed.tokens.weight.normal_()  # the model moved on: the next example sees it


def test_without_a_source_similar_falls_back_to_random(tok):
    m, rng = masker(tok, replace_probs=(1.0, 0.0, 0.0)), np.random.default_rng(6)
    out = m.corrupt(sequence(tok, rng), rng)
    assert len(out["units"]) and (unit_decisions(out) == 1).all()


def test_nearest_excludes_itself_and_disallowed_columns():
    unit = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.8, 0.2]]), dim=1)
    ok = torch.tensor([True, True, True, False])
    near = nearest(unit, 2, ok=ok, chunk=3)
    assert near[0].tolist() == [1, 2] and near[3].tolist() == [1, 0] and near[2].tolist() == [1, 0]
    grouped = nearest(unit, 2, group=torch.tensor([0, 1, 0, 1]), chunk=3)  # only within a group
    assert grouped[0].tolist() == [2, -1] and grouped[1].tolist() == [3, -1]


def test_objective_cli_shows_similar_words_and_no_mask(tok, vectors, tmp_path, capsys):
    tok.save(tmp_path / "tok")
    code = main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path / "tok"), "--json", "--seed", "1",
                 "--set", "masking=macbert", "--set", f"similar_words={vectors}", "--set", "mask_prob=0.5"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["masking"] == "macbert" and out["similar_source"] == "file"
    assert out["mask_token_id"] not in out["input_ids"] and "similar" in out["replacement"]
    for p in out["masked_positions"]:
        assert out["labels"][p] == out["original_ids"][p - 1]  # [CLS] shifts the text by one


def test_pretrain_macbert_checkpoint_stays_bert(tmp_path, capsys):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("\n".join(json.dumps({"text": f"The {w} sat near the {v}. It ran to the park and back. " * 3})
                                for w in ANIMALS for v in PLACES) + "\n")
    code = main(["pretrain", "--preset", "bert-tiny", "--objective", "mlm", "--masking", "macbert",
                 "--corpus", str(corpus), "--out", str(tmp_path / "r"), "--max-steps", "2", "--seq-len", "32",
                 "--batch-size", "2"])
    assert code == 0, capsys.readouterr().err
    configs = list((tmp_path / "r").rglob("config.json"))
    hf = [json.loads(c.read_text()) for c in configs]
    assert configs and all(c["model_type"] == "bert" and c["architectures"] == ["BertForPreTraining"] for c in hf)
    transformers = pytest.importorskip("transformers", reason="transformers (test extra) loads the checkpoint")
    model = transformers.BertForMaskedLM.from_pretrained(tmp_path / "r" / "final")  # a plain BERT MLM
    assert model.config.vocab_size == hf[0]["vocab_size"]


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the similar-words file"),
    ("cat 1 2\ndog 1\n", "line 2 has 1 numbers, expected 2"),
    ("cat 1 x\n", "not a vectors file"),
    ("\n\n", "no vectors"),
])
def test_bad_similar_words_file_is_one_line(tok, tmp_path, capsys, content, message):
    path = tmp_path / "v.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(PlmlabError, match=message):
        read_vectors(str(path))
    tok.save(tmp_path / "tok")
    code = main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path / "tok"),
                 "--set", "masking=macbert", "--set", f"similar_words={path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_similar_words_need_macbert(tok):
    with pytest.raises(PlmlabError, match="similar_words is for masking=macbert"):
        get_objective("mlm")(tok, 64, similar_words="v.txt")


def test_objective_attach_model_gives_similar_words(tok):
    objective = get_objective("mlm")(tok, 64, masking="macbert", replace_probs=[1.0, 0.0, 0.0])
    ids = tok.encode(TEXT, add_special_tokens=False)
    before = objective.describe(objective.from_ids(ids, np.random.default_rng(7)))
    assert set(before["replacement"]) == {"random"} and before["similar_source"].startswith("none")
    objective.attach_model(build_model(get_preset("bert-tiny").replace(vocab_size=tok.vocab_size)))  # as the trainer
    after = objective.describe(objective.from_ids(ids, np.random.default_rng(7)))
    assert set(after["replacement"]) == {"similar"} and after["similar_source"] == "model embeddings"


def test_pretrain_refuses_a_missing_similar_words_file_before_any_work(tmp_path, capsys, monkeypatch):
    from plmlab.train import pretrain_setup

    def no_work(*args, **kwargs):
        raise AssertionError("a tokenizer was trained before the options were checked")

    monkeypatch.setattr(pretrain_setup, "make_tokenizer", no_work)
    code = main(["pretrain", "--preset", "bert-tiny", "--objective", "mlm", "--masking", "macbert",
                 "--similar-words", str(tmp_path / "none.txt"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot read the similar-words file" in err


def test_a_model_table_larger_than_the_vocabulary_gives_real_tokens(tok):
    m, rng = masker(tok, replace_probs=(1.0, 0.0, 0.0), mask_prob=0.5), np.random.default_rng(8)
    m.attach_model(build_model("bert-tiny"))  # 2048 rows for a 150-token vocabulary
    for _ in range(20):
        out = m.corrupt(sequence(tok, rng, 40), rng)
        assert (unit_decisions(out) == 0).all() and out["input_ids"].max() < tok.vocab_size


def test_pretraining_attaches_the_model_being_trained(tmp_path):
    # without --similar-words, the similar words come from the embeddings of the very model the
    # trainer updates (not a copy), attached before the fixed validation batches are drawn
    from plmlab.train.options import PretrainOptions
    from plmlab.train.parallel import Dist
    from plmlab.train.pretrain_setup import prepare
    from plmlab.train.rundir import RunDir

    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(f'{{"text": "The quick brown fox {i} jumps over the lazy dog. It runs far away."}}\n'
                              for i in range(40)))
    options = PretrainOptions(out=str(tmp_path / "run"), preset="bert-tiny", objective="mlm", corpus=[str(corpus)],
                              objective_options={"masking": "macbert"}, max_steps=2, batch_size=2, seq_len=32,
                              vocab_size=300, device="cpu", progress="none")
    setup = prepare(options, RunDir(tmp_path / "run"), Dist())
    neighbours = setup.objective.masker.neighbours
    assert neighbours.weight is setup.model.embed.tokens.weight
