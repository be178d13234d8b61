"""Built-in instruction data (data/instructions.py): deterministic, split by module (document),
a preference set of right against wrong answers; `plmlab sft` without --data trains on it and
`plmlab evaluate --task generate` scores its eval split before and after (numbers printed)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.data.instructions import builtin_conversations, builtin_instructions, builtin_preferences
from plmlab.errors import PlmlabError
from plmlab.tokenizers import builtin_tokenizer


def test_splits_are_deterministic_and_disjoint_by_module():
    train, evaluation = builtin_instructions("train"), builtin_instructions("eval")
    assert len(train) > 1000 and 100 < len(evaluation) < len(train) / 3
    assert not {it["module"] for it in train} & {it["module"] for it in evaluation}
    assert {it["kind"] for it in evaluation} == {"summary", "module", "signature"}
    assert builtin_instructions("eval") == evaluation
    asked = {it["prompt"]: it["response"] for it in train}
    assert asked.get("Which module provides dumps?") in (None, "json")
    if "Give the signature of abc.abstractmethod." in asked:  # stdlib facts, read with ast
        assert asked["Give the signature of abc.abstractmethod."] == "abstractmethod(funcobj)"
        assert asked["What does abc.abstractmethod do?"] == "A decorator indicating abstract methods."
    conv = builtin_conversations("eval")[0]["messages"]
    assert [m["role"] for m in conv] == ["user", "assistant"] and conv[1]["content"] == evaluation[0]["response"]
    with pytest.raises(PlmlabError, match="unknown split"):
        builtin_instructions("test")


def test_preferences_pair_the_right_answer_with_another_items():
    prefs, items = builtin_preferences("eval"), builtin_instructions("eval")
    right = {it["prompt"]: it["response"] for it in items}
    answers = {it["response"] for it in items}
    assert len(prefs) > 0.9 * len(items)
    for p in prefs:
        assert p["chosen"] == right[p["prompt"]] and p["rejected"] != p["chosen"] and p["rejected"] in answers


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "plmlab", *map(str, args)], capture_output=True, text=True)


def exact_match(model, data):
    result = run_cli("evaluate", "--task", "generate", "--model", model, "--data", data, "--max-new-tokens", 12,
                     "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sft_without_data_uses_the_builtin_set_and_evaluate_scores_it(tmp_path):
    torch.manual_seed(0)
    base = tmp_path / "base"
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny"), base, tokenizer=builtin_tokenizer("gpt2", 2048))
    out = tmp_path / "sft"
    done = run_cli("sft", "--model", base, "--out", out, "--epochs", 1, "--batch-size", 64, "--lr", "3e-3",
                   "--truncate", "--progress", "none")
    assert done.returncode == 0, done.stderr
    items = out / "eval_generate.jsonl"
    first = json.loads(items.read_text().splitlines()[0])
    assert first["context"].startswith("<|im_start|>user\n") and first["context"].endswith("<|im_start|>assistant\n")
    before, after = exact_match(base, items), exact_match(out, items)
    print(f"built-in eval split, gpt-tiny: exact match {before} before SFT, {after} after")
    assert "eval_loss" in json.loads((out / "summary.json").read_text())["history"][0]
