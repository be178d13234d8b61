"""Text-to-text fine-tuning (`plmlab finetune --task text2text`) of a tiny T5: classification
as text-to-text learns, metrics and the stored prefix, and bad data fails with one line."""

import json
import random
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.finetune import FinetuneOptions, finetune
from plmlab.tokenizers import train_tokenizer

GOOD = ["great", "wonderful", "superb", "lovely"]
BAD = ["awful", "boring", "dreadful", "dull"]


def _rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.random() < 0.5
        word = rng.choice(GOOD if label else BAD)
        rows.append({"input": f"a {word} film", "target": "yes" if label else "no"})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    texts = [r["input"] + " " + r["target"] for r in _rows(200, 0)] + ["sst2:"] * 20
    tok = train_tokenizer(texts, "t5", vocab_size=400)
    torch.manual_seed(0)
    model = plmlab.build_model("t5-tiny", vocab_size=len(tok))
    folder = tmp_path_factory.mktemp("t5") / "model"
    plmlab.save_pretrained(model, folder, tokenizer=tok)
    return folder


def test_classification_as_text_to_text_learns(pretrained, tmp_path):
    train, dev = _write(tmp_path / "train.jsonl", _rows(64, 1)), _write(tmp_path / "dev.jsonl", _rows(24, 2))
    history = finetune(FinetuneOptions(model=str(pretrained), task="text2text", train=train, eval=dev,
                                       out=str(tmp_path / "run"), epochs=12, batch_size=8, lr=3e-3, warmup=0.05,
                                       extra={"prefix": "sst2: ", "max_target_length": 8, "num_beams": 1}),
                       log=lambda line: None)
    first, last = history[0], history[-1]
    assert list(last)[:3] == ["epoch", "train_loss", "eval_accuracy"]
    assert last["train_loss"] < first["train_loss"]
    assert last["eval_accuracy"] >= 0.9 and last["eval_exact_match"] == last["eval_accuracy"]
    assert last["eval_invalid_predictions"] <= 0.1
    model = plmlab.load_pretrained(tmp_path / "run" / "final")
    assert model.config.notes["text2text_prefix"] == "sst2: "
    # metrics.jsonl: one record per step (step / loss / lr, so `plmlab plot` reads it), with the
    # evaluation on each epoch's last step; summary.json: the per-epoch history returned above
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 12 * 8 + 1)) and {"loss", "lr"} <= set(records[0])
    assert sum("eval_accuracy" in r for r in records) == 12
    assert {k: v for k, v in records[-1].items() if k.startswith("eval_")} == {
        k: v for k, v in last.items() if k.startswith("eval_")}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["history"] == history


def test_cli_and_bad_data(pretrained, tmp_path):
    train = _write(tmp_path / "train.jsonl", _rows(16, 3))
    cmd = [sys.executable, "-m", "plmlab", "finetune", "--model", str(pretrained), "--task", "text2text",
           "--out", str(tmp_path / "run"), "--epochs", "1", "--batch-size", "8", "--prefix", "sst2: "]
    ok = subprocess.run(cmd + ["--train", train, "--eval", train, "--json"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    record = json.loads(ok.stdout.splitlines()[-1])
    assert {"eval_accuracy", "eval_exact_match", "eval_loss"} <= set(record)

    empty = tmp_path / "empty.jsonl"
    empty.write_text('{"input": "fine", "target": "yes"}\n{"input": "   ", "target": "no"}\n')
    bad = subprocess.run(cmd + ["--train", str(empty)], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "empty.jsonl:2: empty input" in bad.stderr


def test_limits(pretrained, tmp_path):
    long = _write(tmp_path / "long.jsonl", [{"input": "the film " * 80, "target": "yes"}] * 2)
    base = dict(model=str(pretrained), task="text2text", out=str(tmp_path / "run"), epochs=1, batch_size=2)
    with pytest.raises(PlmlabError, match=r"long.jsonl:1: input has \d+ tokens"):
        finetune(FinetuneOptions(train=long, **base), log=lambda line: None)
    lines = []
    finetune(FinetuneOptions(train=long, truncate=True, **base), log=lines.append)  # cut, then fine
    width = plmlab.load_pretrained(pretrained).config.d_model  # text2text's own rate at 768: T5's 3e-4
    assert f"lr {float(f'{3e-4 * 768 / width:.2g}'):g} (the default: 0.0003 x 768 / width {width}; --lr sets it)" in lines
    target = _write(tmp_path / "target.jsonl", [{"input": "film", "target": "great " * 20}] * 2)
    with pytest.raises(PlmlabError, match="target has"):
        finetune(FinetuneOptions(train=target, extra={"max_target_length": 8}, **base), log=lambda line: None)


def test_needs_an_encoder_decoder(tmp_path):
    tok = train_tokenizer(["a b c d e f g"] * 10, "bert", vocab_size=60)
    folder = tmp_path / "bert"
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", vocab_size=64), folder, tokenizer=tok)
    train = _write(tmp_path / "t.jsonl", _rows(4, 0))
    with pytest.raises(PlmlabError, match="encoder-decoder"):
        finetune(FinetuneOptions(model=str(folder), task="text2text", train=train, out=str(tmp_path / "o")),
                 log=lambda line: None)
