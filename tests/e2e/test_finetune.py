"""`plmlab finetune`: classification and token classification on tiny models and data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.finetune import task_names
from plmlab.finetune.classification import macro_f1
from plmlab.tokenizers import train_tokenizer

POS, NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILL = ["the", "movie", "was", "really", "a", "plot", "and", "actors", "film", "story"]


def sentence(rng, word: str) -> str:
    words = list(rng.choice(FILL, size=6))
    words.insert(int(rng.integers(0, 7)), word)
    return " ".join(words)


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory):
    rng = np.random.default_rng(0)
    texts = [sentence(rng, w) for w in POS + NEG for _ in range(5)]
    out = {}
    for preset in ("bert-tiny", "roberta-tiny"):
        tok = train_tokenizer(texts, preset.split("-")[0], vocab_size=400, min_frequency=1)
        torch.manual_seed(0)
        model = plmlab.build_model(preset, vocab_size=tok.vocab_size, dropout=0.0, attn_dropout=0.0)
        out[preset] = tmp_path_factory.mktemp(preset)
        plmlab.save_pretrained(model, out[preset], tokenizer=tok)
    return out


def write_sentiment(path, n, seed, fmt="jsonl"):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        rows.append({"text": sentence(rng, str(rng.choice(POS if label == "pos" else NEG))), "label": label})
    if fmt == "csv":
        path.write_text("text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_tasks_are_registered():
    assert {"classification", "token-classification"} <= set(task_names())


@pytest.mark.parametrize("preset,fmt", [("bert-tiny", "csv"), ("roberta-tiny", "jsonl")])
def test_classification_learns_and_saves_hf(model_dirs, tmp_path, preset, fmt, capsys):
    train = write_sentiment(tmp_path / f"train.{fmt}", 96, 1, fmt)
    dev = write_sentiment(tmp_path / f"dev.{fmt}", 32, 2, fmt)
    code = main(["finetune", "--model", str(model_dirs[preset]), "--task", "classification", "--train", str(train),
                 "--eval", str(dev), "--out", str(tmp_path / "run"), "--epochs", "6", "--lr", "3e-3",
                 "--batch-size", "16", "--json"])
    assert code == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(history) == 6 and {"eval_accuracy", "eval_macro_f1", "train_loss"} <= set(history[-1])
    assert history[-1]["eval_accuracy"] >= 0.9, history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # transformers loads it as *ForSequenceClassification, with the same logits and labels
    transformers = pytest.importorskip("transformers")
    final = tmp_path / "run" / "final"
    config = json.loads((final / "config.json").read_text())
    cls = "BertForSequenceClassification" if preset.startswith("bert") else "RobertaForSequenceClassification"
    assert config["architectures"] == [cls] and config["id2label"] == {"0": "neg", "1": "pos"}
    ours = plmlab.load_pretrained(final)
    ref = getattr(transformers, cls).from_pretrained(final).eval()
    tok = transformers.AutoTokenizer.from_pretrained(final)
    enc = tok(["the movie was great", "a bad plot"], return_tensors="pt", padding=True)
    with torch.no_grad():
        torch.testing.assert_close(ours(**enc).logits, ref(**enc).logits, atol=1e-4, rtol=1e-4)


def test_token_classification(model_dirs, tmp_path, capsys):
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(64):
        words = list(rng.choice(FILL + POS, size=8))
        rows.append({"tokens": words, "labels": ["ADJ" if w in POS else "O" for w in words]})
    data = tmp_path / "ner.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code = main(["finetune", "--model", str(model_dirs["bert-tiny"]), "--task", "token-classification",
                 "--train", str(data), "--eval", str(data), "--out", str(tmp_path / "run"), "--epochs", "5",
                 "--lr", "3e-3", "--json"])
    assert code == 0
    history = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert history[-1]["eval_accuracy"] > 0.9, history
    transformers = pytest.importorskip("transformers")
    ref = transformers.BertForTokenClassification.from_pretrained(tmp_path / "run" / "final")
    assert ref.config.id2label == {0: "ADJ", 1: "O"}


def test_the_run_ends_with_next_commands_that_run(model_dirs, tmp_path, capsys):
    """Without --json, "next:" lines name the commands to try on the result; each of them runs."""
    import shlex

    train = write_sentiment(tmp_path / "train.csv", 16, 1, "csv")
    out = tmp_path / "my run"
    assert main(["finetune", "--model", str(model_dirs["bert-tiny"]), "--task", "classification", "--train",
                 str(train), "--eval", str(train), "--out", str(out), "--epochs", "1", "--progress", "none"]) == 0
    steps = [line.removeprefix("next: ") for line in capsys.readouterr().out.splitlines() if line.startswith("next: ")]
    assert [shlex.split(s)[:2] for s in steps] == [["plmlab", "classify"], ["plmlab", "evaluate"]], steps
    for command in steps:
        assert main(shlex.split(command)[1:]) == 0, command


@pytest.mark.parametrize("content,message", [
    ('{"text": "a good movie"}\n', "missing field 'label'"),
    ('{"label": "pos"}\n', "missing field 'text'"),
    ("not json\n", "invalid JSON"),
])
def test_bad_data_is_a_one_line_error(model_dirs, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(content)
    code = main(["finetune", "--model", str(model_dirs["bert-tiny"]), "--task", "classification",
                 "--train", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_unknown_eval_label_and_overlong_input(model_dirs, tmp_path, capsys):
    train = write_sentiment(tmp_path / "train.jsonl", 8, 1)
    dev = tmp_path / "dev.jsonl"
    dev.write_text(json.dumps({"text": "a fine movie", "label": "neutral"}) + "\n")
    args = ["finetune", "--model", str(model_dirs["bert-tiny"]), "--task", "classification", "--train", str(train),
            "--out", str(tmp_path / "run"), "--epochs", "1"]
    assert main(args + ["--eval", str(dev)]) == 2
    assert "unknown label 'neutral'" in capsys.readouterr().err
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"text": "good " * 300, "label": "pos"}) + "\n" + json.dumps({"text": "bad", "label": "neg"}))
    assert main(args[:6] + [str(long)] + args[7:]) == 2
    assert "--truncate" in capsys.readouterr().err
    assert main(args[:6] + [str(long)] + args[7:] + ["--truncate"]) == 0


def test_text_pair_needs_token_types(model_dirs, tmp_path, capsys):
    rows = [{"text": "good", "text_pair": "great", "label": "same"}, {"text": "good", "text_pair": "bad", "label": "diff"}]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["finetune", "--task", "classification", "--train", str(data), "--out", str(tmp_path / "r"), "--epochs", "1"]
    assert main(base + ["--model", str(model_dirs["bert-tiny"])]) == 0  # BERT: types 0 / 1
    model = plmlab.load_pretrained(model_dirs["bert-tiny"])
    plmlab.save_pretrained(model.__class__(model.config.replace(type_vocab_size=0)), tmp_path / "notypes", format="plmlab")
    for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / "notypes" / f).write_bytes((model_dirs["bert-tiny"] / f).read_bytes())
    assert main(base + ["--model", str(tmp_path / "notypes")]) == 2
    assert "no token type" in capsys.readouterr().err


def test_macro_f1():
    pred, gold = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 0])
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 0 fn 1 -> 0.8; class 2: tp 0 fp 1 -> 0
    assert macro_f1(pred, gold, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)
