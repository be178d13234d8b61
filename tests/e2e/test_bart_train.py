"""BART end to end with a tiny model: `plmlab pretrain --preset bart-tiny --objective bart` on the
built-in corpus (the loss falls, the checkpoint is a BartForConditionalGeneration), `plmlab
generate` on it, and text-to-text fine-tuning (`--task text2text`) that learns."""

import json
import random
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.finetune import FinetuneOptions, finetune
from plmlab.tokenizers import load_tokenizer, train_tokenizer


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("bart") / "run"
    cmd = [sys.executable, "-m", "plmlab", "pretrain", "--preset", "bart-tiny", "--objective", "bart",
           "--out", str(out), "--max-steps", "12", "--batch-size", "8", "--seq-len", "64", "--threads", "1",
           "--sample-tokens", "0", "--progress", "none"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return out


def test_pretrain_on_the_builtin_corpus_lowers_the_loss(run_dir):
    losses = [r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.1
    config = json.loads((run_dir / "final" / "config.json").read_text())
    assert config["architectures"] == ["BartForConditionalGeneration"] and config["plmlab"]["position_offset"] == 2


def test_generate_cli_on_the_pretrained_model(run_dir):
    final = str(run_dir / "final")
    prompt = "The function <mask> a value."
    out = subprocess.run([sys.executable, "-m", "plmlab", "generate", "--model", final, "--max-new-tokens", "5",
                          "--num-beams", "2", "--json", prompt], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)[0]
    model, tok = plmlab.load_pretrained(final), load_tokenizer(final)
    ids = torch.tensor([tok.encode(prompt)])
    assert plmlab.generate(model, ids, max_new_tokens=5, num_beams=2).tolist()[0] == result["ids"]


GOOD, BAD = ["great", "wonderful", "superb", "lovely"], ["awful", "boring", "dreadful", "dull"]


def _rows(n, seed):
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.random() < 0.5
        rows.append({"input": f"a {rng.choice(GOOD if label else BAD)} film", "target": "yes" if label else "no"})
    return rows


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_text2text_finetuning_learns(tmp_path):
    tok = train_tokenizer([r["input"] + " " + r["target"] for r in _rows(200, 0)], "roberta", vocab_size=400)
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("bart-tiny", vocab_size=len(tok)), tmp_path / "model", tokenizer=tok)
    train, dev = _write(tmp_path / "train.jsonl", _rows(64, 1)), _write(tmp_path / "dev.jsonl", _rows(24, 2))
    history = finetune(FinetuneOptions(model=str(tmp_path / "model"), task="text2text", train=train, eval=dev,
                                       out=str(tmp_path / "run"), epochs=8, batch_size=8, lr=3e-3, warmup=0.05,
                                       extra={"max_target_length": 8, "num_beams": 1}),
                       log=lambda line: None)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["eval_accuracy"] >= 0.9
    tuned = plmlab.load_pretrained(tmp_path / "run" / "final")
    assert tuned.config.per_stack_embeddings and hasattr(tuned, "decoder_embed")


def test_text2text_targets_default_to_what_a_fixed_context_decoder_has():
    """BART's decoder has learned positions: 128 of them in bart-tiny, one for its start token. The
    default target length fits it (it was 128, and evaluating then asked for 128 new tokens)."""
    from plmlab.finetune.text2text import Text2Text
    from plmlab.presets import get_preset

    assert Text2Text({})._limits(get_preset("bart-tiny"))[1] == min(128, get_preset("bart-tiny").max_positions - 1)
    assert Text2Text({})._limits(get_preset("t5-small"))[1] == 128
    assert Text2Text({"max_target_length": 8})._limits(get_preset("bart-tiny"))[1] == 8
