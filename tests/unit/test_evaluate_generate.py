"""Generation scoring: SQuAD's exact match and token F1, greedy continuations cut at a newline."""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.evaluate.generate import evaluate_generate, exact_match, normalize_answer, read_generate_items, token_f1
from plmlab.tokenizers import train_tokenizer

TEXTS = ["q: where did the cat sit? a: on the mat\n", "q: where did the dog run? a: in the park\n"] * 20


def test_squad_normalisation_exact_match_and_f1():
    assert normalize_answer("The  Eiffel-Tower, in Paris!") == "eiffeltower in paris"
    assert exact_match("the Mat.", "mat") == 1.0 and exact_match("a mat", "mats") == 0.0
    # "on the mat" vs "mat": pred words [on, mat], gold [mat]: P = 1/2, R = 1, F1 = 2/3
    assert token_f1("on the mat", "mat") == pytest.approx(2 / 3)
    assert token_f1("mat mat", "mat") == pytest.approx(2 * 0.5 * 1 / 1.5)  # multiset overlap: 1 common word
    assert token_f1("dog", "cat") == 0.0 and token_f1("", "") == 1.0 and token_f1("the", "cat") == 0.0


def taught_gpt():
    torch.manual_seed(0)
    tok = train_tokenizer(TEXTS, "gpt2", vocab_size=300)
    model = plmlab.build_model("gpt-tiny")
    ids = [tok.encode(t) for t in TEXTS[:2]]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = sum(model(torch.tensor([x[:-1]]), labels=torch.tensor([x[1:]])).loss for x in ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), tok


def test_a_model_taught_the_answers_generates_them_and_stops_at_the_newline():
    model, tok = taught_gpt()
    items = [{"context": "q: where did the cat sit? a:", "answer": "on the mat"},
             {"context": "q: where did the dog run? a:", "answer": ["the park", "in the park"]},
             {"context": "q: where did the dog run? a:", "answer": "on the mat"}]
    result = evaluate_generate(model, tok, items, max_new_tokens=12, batch_size=2)
    assert [r["prediction"] for r in result.items] == ["on the mat", "in the park", "in the park"]
    assert [r["exact_match"] for r in result.items] == [1.0, 1.0, 0.0]
    assert result.items[2]["f1"] == pytest.approx(token_f1("in the park", "on the mat"))
    assert result.metrics["exact_match"] == pytest.approx(2 / 3) and result.metrics["n"] == 3
    assert result.metrics["items_per_s"] > 0


def test_read_generate_items_and_its_errors(tmp_path):
    path = tmp_path / "gen.jsonl"
    lines = [{"context": "q", "answer": "a"}, {"context": "q", "answer": ["a", "b"]}]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert read_generate_items(path) == [{"context": "q", "answer": "a"}, {"context": "q", "answer": ["a", "b"]}]
    path.write_text(json.dumps({"context": "q"}) + "\n")
    with pytest.raises(PlmlabError, match=r"gen.jsonl:1: 'answer' must be a string .*the line has no 'answer'"):
        read_generate_items(path)
    path.write_text("\n")
    with pytest.raises(PlmlabError, match="no records"):
        read_generate_items(path)


def test_an_encoder_cannot_be_scored_by_generation():
    tok = train_tokenizer(TEXTS, "bert", vocab_size=200)
    with pytest.raises(PlmlabError, match="encoder-only model cannot generate"):
        evaluate_generate(plmlab.build_model("bert-tiny").eval(), tok, [{"context": "q", "answer": "a"}])
