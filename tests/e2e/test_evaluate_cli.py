"""`plmlab evaluate` end to end on gpt-tiny / bert-tiny / t5-tiny runs pretrained for two steps,
its dispatch to choice / generate / the built-in suite / lm-eval (fakes of their interfaces),
--compare with a table and a plot, and every bad input as one line with exit status 2."""

from __future__ import annotations

import json
import random
import sys
import types

import pytest

from plmlab.cli import main
from plmlab.evaluate import EvalResult, dispatch
from plmlab.train import PretrainOptions, pretrain

WORDS = "the a parser module reads writes returns value file error list token cache builds stream".split()
RUNS = {"gpt": ("gpt-tiny", "clm"), "bert": ("bert-tiny", "mlm"), "t5": ("t5-tiny", "span-corruption")}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(5)
    path = tmp_path_factory.mktemp("eval") / "corpus.jsonl"
    docs = [" ".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 11))).capitalize() + "."
                     for _ in range(rng.randint(3, 7))) for _ in range(40)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, corpus):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, (preset, objective) in RUNS.items():
        out[name] = root / name
        pretrain(PretrainOptions(out=str(out[name]), preset=preset, objective=objective, corpus=[str(corpus)],
                                 max_steps=2, batch_size=4, seq_len=32, eval_every=0, save_every=0, sample_tokens=0,
                                 seed=0, threads=1, progress="none", vocab_size=512))
    return out


def evaluate(capsys, *argv):
    code = main(["evaluate", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def metrics(capsys, *argv) -> dict:
    code, out, err = evaluate(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_perplexity_end_to_end_with_per_item_scores(runs, corpus, tmp_path, capsys):
    items = tmp_path / "items.jsonl"
    m = metrics(capsys, "--model", runs["gpt"], "--task", "perplexity", "--data", corpus, "--out", items,
                "--stride", 16, "--max-length", 32)
    assert m["task"] == "perplexity" and m["n"] == 40 and m["stride"] == 16 and m["max_length"] == 32
    assert 1 < m["perplexity"] < 600 and 0 < m["bits_per_byte"] < 20 and m["tokens_per_s"] > 0
    lines = [json.loads(line) for line in items.read_text().splitlines()]
    assert len(lines) == 40 and sum(i["tokens"] for i in lines) == m["tokens"]
    code, out, _ = evaluate(capsys, "--model", runs["gpt"], "--task", "perplexity", "--data", corpus)
    assert code == 0 and "bits_per_byte" in out and "perplexity" in out


def test_mlm_and_span_corruption_end_to_end(runs, corpus, capsys):
    m = metrics(capsys, "--model", runs["bert"], "--task", "mlm", "--data", corpus, "--batch-size", 64)
    assert 0 <= m["masked_accuracy"] <= 1 and m["pseudo_perplexity"] > 1 and m["masked_tokens"] > 0
    assert m == {**metrics(capsys, "--model", runs["bert"], "--task", "mlm", "--data", corpus, "--batch-size", 64),
                 "tokens_per_s": m["tokens_per_s"]}  # seeded
    s = metrics(capsys, "--model", runs["t5"], "--task", "span-corruption", "--data", corpus)
    assert 0 <= s["accuracy"] <= 1 and s["loss"] > 0 and s["targets"] > 0


def test_compare_prints_one_table_and_draws_a_bar_plot(runs, corpus, tmp_path, capsys):
    other = tmp_path / "gpt-again"
    other.symlink_to(runs["gpt"], target_is_directory=True)
    code, out, err = evaluate(capsys, "--compare", runs["gpt"], other, "--task", "perplexity", "--data", corpus)
    assert code == 0, err
    header, rule, *rows = out.splitlines()
    assert "perplexity" in header and "bits_per_byte" in header and len(rows) == 2
    assert rows[0].split()[0] == "gpt" and rows[1].split()[0] == "gpt-again"
    assert rows[0].split()[1:] == rows[1].split()[1:-1] + rows[0].split()[-1:]  # same numbers but the speed
    pytest.importorskip("matplotlib", reason="matplotlib (the [plot] extra) is not installed")
    png = tmp_path / "cmp.png"
    code, _, err = evaluate(capsys, "--compare", runs["gpt"], other, "--task", "perplexity", "--data", corpus,
                            "--plot", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- dispatch to the other evaluations, through fakes of their interfaces -----------------------------
@pytest.fixture
def fakes(monkeypatch):
    calls = {}

    def module(name, **functions):
        fake = types.ModuleType(name)
        for key, fn in functions.items():
            setattr(fake, key, fn)
        monkeypatch.setitem(sys.modules, name, fake)

    def evaluate_choice(model, tokenizer, items, shots=0, demos=None, seed=0, batch_size=16):
        calls["choice"] = dict(items=items, shots=shots, demos=demos, seed=seed, batch_size=batch_size)
        return EvalResult("choice", {"accuracy": 0.5, "accuracy_norm": 0.25, "n": len(items)}, [{"index": 0}])

    def evaluate_generate(model, tokenizer, items, max_new_tokens=32, batch_size=16):
        calls["generate"] = dict(items=items, max_new_tokens=max_new_tokens, batch_size=batch_size)
        return EvalResult("generate", {"exact_match": 1.0, "f1": 1.0, "n": 1})

    def evaluate_suite(model, tokenizer, shots=(0,), seed=0, batch_size=16):
        calls["suite"] = dict(shots=shots, seed=seed, batch_size=batch_size)
        rows = [{"task": "next-sentence", "shots": k, "accuracy": 0.5, "chance": 0.25, "centered": 1 / 3, "n": 9}
                for k in shots]
        return EvalResult("builtin", {"tasks": rows, "core": 1 / 3})

    def run_lm_eval(model_dir, tasks, include_path=None, num_fewshot=None, limit=None, batch_size=16, quantize=None):
        calls["lmeval"] = dict(model_dir=str(model_dir), tasks=tasks, include_path=include_path,
                               num_fewshot=num_fewshot, limit=limit, batch_size=batch_size, quantize=quantize)
        return EvalResult("lm-eval", {"accuracy": 0.75})

    for name, fn in dict(evaluate_choice=evaluate_choice, read_choice_items=lambda path: [{"path": str(path)}],
                         evaluate_generate=evaluate_generate, read_generate_items=lambda path: [{"path": str(path)}],
                         evaluate_suite=evaluate_suite).items():
        monkeypatch.setattr(dispatch, name, fn)
    module("plmlab.lmeval", run_lm_eval=run_lm_eval)  # imported when asked for (lm-eval is an optional extra)
    return calls


def test_choice_and_generate_dispatch(runs, tmp_path, capsys, fakes):
    out = tmp_path / "choice.jsonl"
    m = metrics(capsys, "--model", runs["gpt"], "--task", "choice", "--data", "q.jsonl", "--shots", 2,
                "--demos", "d.jsonl", "--seed", 4, "--batch-size", 3, "--out", out)
    assert m == {"task": "choice", "accuracy": 0.5, "accuracy_norm": 0.25, "n": 1}
    assert fakes["choice"] == {"items": [{"path": "q.jsonl"}], "shots": 2, "demos": [{"path": "d.jsonl"}],
                               "seed": 4, "batch_size": 3}
    assert json.loads(out.read_text()) == {"index": 0}
    metrics(capsys, "--model", runs["t5"], "--task", "generate", "--data", "g.jsonl", "--max-new-tokens", 5)
    assert fakes["generate"] == {"items": [{"path": "g.jsonl"}], "max_new_tokens": 5, "batch_size": 16}


def test_suite_and_lm_eval_dispatch(runs, capsys, fakes):
    code, out, err = evaluate(capsys, "--model", runs["gpt"], "--suite", "builtin", "--shots", "0,1,5")
    assert code == 0, err
    assert fakes["suite"] == {"shots": (0, 1, 5), "seed": 0, "batch_size": 16}
    assert "next-sentence 5-shot" in out and "centered" in out and "core" in out
    m = metrics(capsys, "--model", runs["gpt"], "--lm-eval-tasks", "a,b", "--include-path", "tasks/", "--limit", 3,
                "--num-fewshot", 1, "--quantize", "int8")
    assert m == {"task": "lm-eval", "accuracy": 0.75}
    assert fakes["lmeval"] == {"model_dir": str(runs["gpt"]), "tasks": ["a", "b"], "include_path": "tasks/",
                               "num_fewshot": 1, "limit": 3, "batch_size": 16, "quantize": "int8"}
    code, out, _ = evaluate(capsys, "--compare", runs["gpt"], runs["t5"], "--suite", "builtin")
    assert code == 0 and "next-sentence 0-shot" in out.splitlines()[0] and "core" in out.splitlines()[0]


# --- bad input: one line, exit 2 ---------------------------------------------------------------------------
def one_line_error(capsys, *argv) -> str:
    code, out, err = evaluate(capsys, *argv)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("plmlab: error: "), err
    return lines[0]


def test_bad_data_files(runs, tmp_path, capsys):
    gpt = ("--model", runs["gpt"], "--task", "perplexity", "--data")
    assert "not found" in one_line_error(capsys, *gpt, tmp_path / "missing.txt")
    (tmp_path / "empty.txt").write_text("\n\n")
    assert "empty" in one_line_error(capsys, *gpt, tmp_path / "empty.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 cr\xe8me".encode("latin-1"))
    assert "UTF-8" in one_line_error(capsys, *gpt, tmp_path / "latin1.txt")
    assert "needs --data" in one_line_error(capsys, "--model", runs["bert"], "--task", "classification")


def test_model_and_task_mismatches(runs, corpus, tmp_path, capsys):
    line = one_line_error(capsys, "--model", runs["bert"], "--task", "perplexity", "--data", corpus)
    assert "tasks that fit it: mlm" in line
    line = one_line_error(capsys, "--model", runs["gpt"], "--task", "mlm", "--data", corpus)
    assert "this model: decoder" in line and "tasks that fit it: perplexity, choice, generate" in line
    line = one_line_error(capsys, "--model", runs["t5"], "--task", "perplexity", "--data", corpus)
    assert "tasks that fit it: span-corruption" in line
    assert "fine-tuned taggers" in one_line_error(capsys, "--model", runs["bert"], "--task", "token-classification",
                                                  "--data", corpus)
    assert "no such checkpoint directory" in one_line_error(capsys, "--model", tmp_path / "nope", "--task", "perplexity")


def test_bad_windows_shots_and_out(runs, corpus, tmp_path, capsys):
    gpt = ("--model", runs["gpt"], "--task", "perplexity", "--data", corpus)
    assert "--stride" in one_line_error(capsys, *gpt, "--stride", 64, "--max-length", 32)
    assert "--stride" in one_line_error(capsys, *gpt, "--stride", 0)
    assert "--stride" in one_line_error(capsys, *gpt, "--stride", -3)
    assert "beyond the model's context" in one_line_error(capsys, *gpt, "--max-length", 4096)
    assert "non-negative" in one_line_error(capsys, "--model", runs["gpt"], "--suite", "builtin", "--shots", "0,-1")
    existing = tmp_path / "scores.jsonl"
    existing.write_text("keep me\n")
    assert "--overwrite" in one_line_error(capsys, *gpt, "--out", existing)
    assert existing.read_text() == "keep me\n"
    assert metrics(capsys, *gpt, "--out", existing, "--overwrite")["n"] == 40
    assert len(existing.read_text().splitlines()) == 40


def test_classifier_and_tagger_end_to_end(tmp_path, capsys):
    import torch

    import plmlab
    from plmlab.tokenizers import train_tokenizer

    texts = ["good film", "bad plot", "a fine story", "sad actors", "nice cast", "poor sound"]
    tok = train_tokenizer(texts * 10, "bert", vocab_size=200, min_frequency=1)
    dirs = {}
    for kind, labels in (("sequence", ["neg", "pos"]), ("token", ["B-X", "I-X", "O"])):
        torch.manual_seed(0)
        model = plmlab.build_model("bert-tiny", vocab_size=tok.vocab_size, head="none", pair_head=False, pooler=True,
                                   classifier=kind, label_names=labels)
        dirs[kind] = tmp_path / kind
        plmlab.save_pretrained(model, dirs[kind], tokenizer=tok)
    dev = tmp_path / "dev.jsonl"
    dev.write_text("".join(json.dumps({"text": t, "label": "pos" if i % 2 else "neg"}) + "\n" for i, t in enumerate(texts)))
    m = metrics(capsys, "--model", dirs["sequence"], "--task", "classification", "--data", dev)
    assert m["n"] == 6 and sum(map(sum, m["confusion_matrix"]["matrix"])) == 6 and 0 <= m["macro_f1"] <= 1
    code, out, _ = evaluate(capsys, "--model", dirs["sequence"], "--task", "classification", "--data", dev)
    assert code == 0 and "confusion matrix" in out and "gold" in out
    tags = tmp_path / "tags.jsonl"
    tags.write_text("".join(json.dumps({"tokens": t.split(), "labels": ["B-X", "I-X", "O"][:len(t.split())]}) + "\n"
                            for t in texts))
    m = metrics(capsys, "--model", dirs["token"], "--task", "token-classification", "--data", tags)
    assert m["entities"] == 6 and 0 <= m["entity_f1"] <= 1 and 0 <= m["token_accuracy"] <= 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "good", "label": "meh"}) + "\n")
    line = one_line_error(capsys, "--model", dirs["sequence"], "--task", "classification", "--data", bad)
    assert "'meh' is not one the model knows" in line
