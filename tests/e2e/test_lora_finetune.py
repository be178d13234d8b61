"""`plmlab finetune ... --lora-r R`: adapters (and the new head) train for every task, OUT/adapter
is PEFT's format, final/ has them merged, and --resume continues a LoRA run bit-identically."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.hf.manifest import list_checkpoints
from plmlab.tokenizers import train_tokenizer
from plmlab.train import read_metrics

WORDS = {"pos": ["good", "great", "fine"], "neg": ["bad", "awful", "poor"]}
FILL = ["the", "movie", "was", "really", "a", "plot", "and", "film"]
LORA = ["--lora-r", "4", "--lora-alpha", "8", "--lora-targets", "attention"]


def rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = "pos" if i % 2 else "neg"
        words = list(rng.choice(FILL, size=5))
        words.insert(int(rng.integers(0, 6)), str(rng.choice(WORDS[label])))
        out.append({"text": " ".join(words), "label": label})
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lora-ft")
    data = rows(32, 0)
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in data))
    (root / "t2t.jsonl").write_text("".join(json.dumps({"input": r["text"], "target": r["label"]}) + "\n" for r in data))
    texts = [r["text"] + " pos neg" for r in data]
    for preset, style in (("bert-tiny", "bert"), ("t5-tiny", "t5"), ("glm-tiny", "glm")):
        tok = train_tokenizer(texts, style, vocab_size=200, min_frequency=1)
        torch.manual_seed(0)
        plmlab.save_pretrained(plmlab.build_model(preset, vocab_size=tok.vocab_size, dropout=0.1), root / preset,
                               tokenizer=tok)
    return root


def args(root, out, preset="bert-tiny", task="classification", train="train.jsonl") -> list[str]:
    return ["finetune", "--model", str(root / preset), "--task", task, "--train", str(root / train), "--out", str(out),
            "--epochs", "2", "--batch-size", "8", "--lr", "1e-2", "--seed", "3", "--threads", "1",
            "--progress", "none", "--save-every", "3", *LORA]


def test_classification_saves_a_peft_adapter_with_its_head(root, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(args(root, out)) == 0
    first = capsys.readouterr().out.splitlines()[0]  # the run says, first, how small a part of the model trains
    assert first.startswith("LoRA: ") and "trainable parameters of" in first and "rank-4 adapters on attn.qkv, attn.o" \
        in first and first.endswith("also trained: classifier"), first
    settings = json.loads((out / "adapter/adapter_config.json").read_text())
    assert settings["task_type"] == "SEQ_CLS" and settings["modules_to_save"] == ["classifier"]
    assert all(".attention." in m for m in settings["target_modules"])
    base, final = load_file(root / "bert-tiny/model.safetensors"), load_file(out / "final/model.safetensors")
    frozen = [k for k in final if k in base and ".attention." not in k]  # embeddings, norms, MLP
    assert frozen and all(torch.equal(final[k], base[k]) for k in frozen)
    changed = [k for k in final if ".attention.self.query.weight" in k]
    assert changed and not any(torch.equal(final[k], base[k]) for k in changed)  # adapters merged in
    peft = pytest.importorskip("peft")
    from transformers import BertForSequenceClassification

    theirs = peft.PeftModel.from_pretrained(
        BertForSequenceClassification.from_pretrained(root / "bert-tiny", num_labels=2), out / "adapter").eval()
    x = torch.randint(5, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=x).logits, plmlab.load_pretrained(out / "final")(input_ids=x).logits,
                                   atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset,task,train,extra", [
    ("t5-tiny", "text2text", "t2t.jsonl", []),
    ("glm-tiny", "cloze", "train.jsonl", ["--verbalizer", "pos:pos,neg:neg"]),
])
def test_every_task_trains_adapters(root, tmp_path, preset, task, train, extra):
    out = tmp_path / "run"
    assert main(args(root, out, preset, task, train) + extra) == 0
    tensors = load_file(out / "adapter/adapter_model.safetensors")
    assert tensors and all(".lora_A." in k or ".lora_B." in k for k in tensors)  # no new head: adapters only
    assert plmlab.load_pretrained(out / "final").config.arch == plmlab.load_pretrained(root / preset).config.arch


def test_merge_lora_onto_the_pretrained_model_rebuilds_the_fine_tune(root, tmp_path, capsys):
    """A classification adapter carries its new head: merged onto the *pretrained* (MLM-head) model it
    gives the fine-tuned classifier, equal to the run's final/; an existing --out needs --overwrite."""
    out, merged = tmp_path / "run", tmp_path / "merged"
    assert main(args(root, out)) == 0
    merge = ["merge-lora", "--model", str(root / "bert-tiny"), "--adapter", str(out / "adapter"), "--out", str(merged)]
    assert main(merge) == 0
    ours, final = load_file(merged / "model.safetensors"), load_file(out / "final/model.safetensors")
    assert ours.keys() == final.keys() and all(torch.equal(ours[k], final[k]) for k in final)
    a, b = plmlab.load_pretrained(merged), plmlab.load_pretrained(out / "final")
    assert a.config.label_names == b.config.label_names == ["neg", "pos"]
    x = torch.randint(5, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(a(input_ids=x).logits, b(input_ids=x).logits)
    assert (merged / "tokenizer.json").is_file()
    capsys.readouterr()
    (merged / "keep.txt").write_text("mine")
    assert main(merge) == 2  # the run-directory rule: nothing is replaced unasked
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --overwrite" in err and (merged / "keep.txt").exists()
    assert main(merge + ["--overwrite"]) == 0
    assert not (merged / "keep.txt").exists() and (merged / "model.safetensors").is_file()
    assert not list(tmp_path.glob(".tmp-*"))  # written aside, then renamed into place


def test_targets_that_match_nothing_are_one_line(root, tmp_path, capsys):
    assert main(args(root, tmp_path / "run")[:-1] + ["mlp.nowhere"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("plmlab: error: --lora-targets 'mlp.nowhere' matches no linear layer") and err.count("\n") == 1


def test_interrupted_lora_run_resumes_bit_identically(root, tmp_path, monkeypatch):
    assert main(args(root, tmp_path / "ref")) == 0
    out = tmp_path / "run"
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@5")
    assert main(args(root, out)) == 128 + signal.SIGINT
    assert list_checkpoints(out / "checkpoints")[-1][0] == 5 and not (out / "adapter").exists()
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    assert main(args(root, out) + ["--resume"]) == 0
    assert [r["loss"] for r in read_metrics(out / "metrics.jsonl")] == [
        r["loss"] for r in read_metrics(tmp_path / "ref/metrics.jsonl")]
    for name in ("adapter/adapter_model.safetensors", "final/model.safetensors"):
        a, b = load_file(out / name), load_file(tmp_path / "ref" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
