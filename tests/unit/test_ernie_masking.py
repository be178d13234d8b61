"""ERNIE 1.0 knowledge masking: phrases and entities masked as whole units (lexicon or built-in
chunker), 15 % of the tokens, one 80/10/10 draw per unit; the chunker's rules; bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from plmlab.cli import main
from plmlab.data.chunker import Lexicon, entity_spans, phrase_spans, sentence_starts
from plmlab.errors import PlmlabError
from plmlab.objectives import IGNORE_INDEX, get_objective
from plmlab.objectives.knowledge_masking import KnowledgeMasker
from plmlab.objectives.mlm import MlmOptions
from plmlab.tokenizers import train_tokenizer

SENTENCES = ["The Python Software Foundation maintains the standard library.",
             "Token shards feed the language model.", "New York is far from San Francisco.",
             "a small parser reads the config file and returns a value."]
TEXT = " ".join(SENTENCES)


@pytest.fixture(scope="module")
def tok():  # cased byte-level BPE (RoBERTa's style): capitals survive for the entity rules
    return train_tokenizer(SENTENCES * 3, "roberta", vocab_size=300, min_frequency=1)


def masker(tok, **options) -> KnowledgeMasker:
    return KnowledgeMasker(tok, MlmOptions(**options))


def with_specials(tok, text: str) -> np.ndarray:
    return np.asarray([tok.cls_id] + tok.encode(text, add_special_tokens=False) + [tok.sep_id])


def sigma(n: int, p: float) -> float:
    return math.sqrt(n * p * (1 - p))


def test_chunker_rules():
    words = "The Python Software Foundation maintains the standard library. New York is big .".split()
    starts = sentence_starts(words, [False] * len(words))
    assert entity_spans(words, starts) == [(1, 4), (8, 10)]  # "The" dropped; "maintains" is lower case
    assert phrase_spans(words) == [(1, 5), (6, 8), (8, 10)]  # the article and "is" split the runs
    assert phrase_spans("alpha beta gamma delta epsilon zeta".split()) == [(0, 4), (4, 6)]  # at most 4 words
    assert entity_spans(["Documents", "are", "split"], [True, False, False]) == []  # a sentence opener alone
    lexicon = Lexicon([("new", "york"), ("new",), ("language", "model")], "lex")
    assert lexicon.spans("in New York a new language model".split()) == [(1, 3), (4, 5), (5, 7)]  # longest first


@pytest.mark.parametrize("level, expected", [
    ("entity", ["Python Software Foundation", "New York", "San Francisco."]),
    ("phrase", ["Python Software Foundation maintains", "standard library.", "Token shards feed", "language model.",
                "New York", "San Francisco.", "small parser reads", "config file"]),
])
def test_units_found_in_the_token_ids(tok, level, expected):
    m = masker(tok, masking=level)
    units = m.view(with_specials(tok, TEXT))["knowledge_units"]
    assert [u[2] for u in units] == expected


def test_a_knowledge_unit_is_masked_whole_with_one_decision(tok):
    m, rng = masker(tok, masking="entity"), np.random.default_rng(0)
    ids = with_specials(tok, TEXT)
    units = [(s, e) for s, e, _ in m.view(ids)["knowledge_units"]]
    hits = 0
    for _ in range(300):
        out = m.corrupt(ids, rng)
        selected = out["labels"] != IGNORE_INDEX
        for s, e in units:
            assert selected[s:e].all() or not selected[s:e].any()  # never half an entity
            if selected[s:e].all():
                hits += 1
                kinds = out["replacement"][np.isin(out["masked_positions"], np.arange(s, e))]
                assert len(set(kinds.tolist())) == 1  # one decision for the whole unit
                if kinds[0] == 0:
                    assert (out["input_ids"][s:e] == tok.mask_id).all()
    assert hits > 50


def test_rate_and_80_10_10_per_unit(tok):
    m, rng = masker(tok, masking="phrase"), np.random.default_rng(1)
    ids = with_specials(tok, TEXT + " " + TEXT)
    n_cand = int(m.candidates(ids).sum())
    counts, rates = np.zeros(3), []
    for _ in range(2000):
        out = m.corrupt(ids, rng)
        rates.append(len(out["masked_positions"]) / n_cand)
        first = np.isin(out["masked_positions"], out["units"][:, 0])  # one decision per unit
        counts += np.bincount(out["replacement"][first], minlength=3)
    assert max(rates) <= round(0.15 * n_cand) / n_cand + 1e-9 and np.mean(rates) > 0.12  # ~15 % of tokens
    n = counts.sum()
    for k, p in zip(counts, [0.8, 0.1, 0.1]):
        assert abs(k - n * p) < 4 * sigma(n, p), counts / n


def test_lexicon_units(tok, tmp_path):
    lex = tmp_path / "lex.txt"
    lex.write_text("# places\nnew york\nlanguage model\n\nstandard\n")
    units = masker(tok, masking="phrase", lexicon=str(lex)).view(with_specials(tok, TEXT))
    assert units["knowledge_source"] == "lexicon"
    assert [u[2] for u in units["knowledge_units"]] == ["standard", "language model.", "New York"]


def test_objective_cli_round_trip(tok, tmp_path, capsys):
    tok.save(tmp_path / "tok")
    code = main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path / "tok"), "--json", "--seed", "3",
                 "--set", "masking=entity", "--set", "mask_prob=0.3"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["masking"] == "entity" and out["knowledge_source"] == "built-in chunker"
    assert [u[2] for u in out["knowledge_units"]][:2] == ["Python Software Foundation", "New York"]
    originals = [out["original_ids"][p - 1] for p in out["masked_positions"]]  # [CLS] shifts by one
    assert [out["labels"][p] for p in out["masked_positions"]] == originals
    rebuilt = [lab if lab != IGNORE_INDEX else i for i, lab in zip(out["input_ids"], out["labels"])]
    assert rebuilt[1:-1] == out["original_ids"]


@pytest.mark.parametrize("sets, message", [
    (["masking=knowledge"], "masking must be one of static, dynamic, macbert, phrase, entity"),
    (["masking=phrase", "lexicon=MISSING"], "cannot read the lexicon"),
    (["masking=phrase", "lexicon=BINARY"], "not a text file"),
    (["masking=entity", "lexicon=EMPTY"], "the lexicon is empty"),
    (["lexicon=EMPTY"], "lexicon is for masking=phrase or entity"),
])
def test_bad_input_is_one_line(tok, tmp_path, capsys, sets, message):
    tok.save(tmp_path / "tok")
    (tmp_path / "BINARY").write_bytes(b"\x00\x01\x02")
    (tmp_path / "EMPTY").write_text("# nothing\n\n")
    sets = [s.replace("=MISSING", f"={tmp_path / 'missing.txt'}").replace("=BINARY", f"={tmp_path / 'BINARY'}")
            .replace("=EMPTY", f"={tmp_path / 'EMPTY'}") for s in sets]
    code = main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path / "tok"),
                 *[x for s in sets for x in ("--set", s)]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err


def test_entity_rules_need_a_cased_tokenizer():
    uncased = train_tokenizer(SENTENCES, "bert", vocab_size=200, min_frequency=1)
    if uncased.decode(uncased.encode("Zq Xv", add_special_tokens=False)) == "Zq Xv":
        pytest.skip("this WordPiece tokenizer keeps case")  # never silently: says why
    with pytest.raises(PlmlabError, match="lower-cases its input: give --lexicon"):
        get_objective("mlm")(uncased, 64, masking="entity")
