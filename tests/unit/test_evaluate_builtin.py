"""The built-in suite: items only from the validation documents, deterministic for a seed,
chance levels, centered accuracy and CORE, the score card."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import plmlab
from plmlab.data import builtin_documents
from plmlab.data.shards import split_documents
from plmlab.errors import PlmlabError
from plmlab.evaluate.builtin import evaluate_suite, format_suite
from plmlab.evaluate.builtin_tasks import TASKS, build_task, chance, validation_documents
from plmlab.evaluate.choice import fewshot_prompts
from plmlab.tokenizers import train_tokenizer


def test_validation_documents_are_the_ones_pretraining_holds_out():
    docs = builtin_documents()
    is_val = split_documents(len(docs), 0.05, 0)  # build_token_data's defaults
    assert [i for i, _ in validation_documents()] == [i for i in range(len(docs)) if is_val[i]]


@pytest.mark.parametrize("name", list(TASKS))
def test_items_come_only_from_validation_documents(name):
    docs = builtin_documents()
    val = {i for i, _ in validation_documents()}
    train_text = " ".join(s for i, d in enumerate(docs) if i not in val for s in d)
    items = build_task(name, 40, seed=0)
    assert len(items) == 40
    for item in items:
        assert item["source"] in val
        source = " ".join(docs[item["source"]])
        answer = item["choices"][item["label"]]
        assert item["context"] in source and answer in source  # the item is its validation document's text
        if name == "next_sentence":
            assert item["context"] + " " + answer in source or any(
                a == item["context"] and b == answer for a, b in zip(docs[item["source"]], docs[item["source"]][1:]))
        if name == "swapped_words":  # the other choices are the answer with two words swapped
            for choice in item["choices"]:
                assert sorted(choice.split()) == sorted(answer.split())
                assert sum(a != b for a, b in zip(choice.split(), answer.split())) in (0, 2)
        assert len(item["choices"]) == 4 and len(set(item["choices"])) == 4
    if name == "next_sentence":  # distractors are sentences of other validation documents, not of training ones
        for item in items:
            for c in item["choices"]:
                assert any(c in d for i, d in enumerate(docs) if i in val)
    assert chance(items) == 0.25
    assert train_text  # the corpus has training documents the suite never drew from


@pytest.mark.parametrize("name", list(TASKS))
def test_items_are_deterministic_for_a_seed(name):
    assert build_task(name, 30, seed=3) == build_task(name, 30, seed=3)
    assert build_task(name, 30, seed=3) != build_task(name, 30, seed=4)
    labels = [it["label"] for it in build_task(name, 200, seed=0)]
    assert len(set(labels)) == 4  # the answer is not always in the same place


def test_suite_fewshot_prompts_are_deterministic_for_a_seed():
    items = build_task("cloze", 20, seed=0)
    assert fewshot_prompts(items, 2, seed=5) == fewshot_prompts(items, 2, seed=5) != fewshot_prompts(items, 2, seed=6)


def test_an_unknown_task_is_one_line():
    with pytest.raises(PlmlabError, match="unknown built-in task 'nope'"):
        build_task("nope")


def test_suite_score_card_and_core():
    torch.manual_seed(0)
    tok = train_tokenizer([s for _, d in validation_documents() for s in d], "gpt2", vocab_size=400)
    model = plmlab.build_model("gpt-tiny").eval()
    result = evaluate_suite(model, tok, shots=(0, 1), seed=0, batch_size=8, n_items=6)
    rows = result.metrics["tasks"]
    assert [(r["task"], r["shots"]) for r in rows] == [(t, k) for t in TASKS for k in (0, 1)]
    for r in rows:
        assert r["n"] == 6 and r["chance"] == 0.25
        assert r["centered"] == pytest.approx((r["accuracy"] - 0.25) / 0.75)
    assert result.metrics["core"] == pytest.approx(np.mean([r["centered"] for r in rows]))
    assert len(result.items) == 6 * len(rows) and result.metrics["items_per_s"] > 0
    card = format_suite(result)
    assert all(t in card for t in TASKS) and "CORE" in card and f"{result.metrics['core']:.3f}" in card
