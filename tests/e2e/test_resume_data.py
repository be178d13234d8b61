"""A resume checks the training data, not only the options (issue 24): every fine-tuning stage
(finetune, sft, dpo, distill) records its task's fingerprint of the training data in each
checkpoint; a --resume after the data file changed is refused in one line, and with the same
data it still ends bit-identically to an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.finetune import FinetuneOptions, finetune
from plmlab.finetune.distill import distill, distill_options
from plmlab.finetune.dpo import dpo, dpo_options
from plmlab.finetune.run import Interrupted
from plmlab.finetune.sft import sft, sft_options
from plmlab.tokenizers import train_tokenizer

WORDS = "the cat dog sat ran on in a park mat good bad great awful movie was really".split()
RUN = dict(batch_size=4, lr=1e-3, seed=3, threads=1, progress="none", save_every=1)


def lines(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(4, 9)))) + "." for _ in range(n)]


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A gpt-tiny and a bert-tiny with their tokenizers (dropout on: resume restores its generator)."""
    root = tmp_path_factory.mktemp("resume-data")
    texts = lines(0, 200)
    for name, style, preset in (("gpt", "gpt2", "gpt-tiny"), ("bert", "bert", "bert-tiny")):
        tok = train_tokenizer(texts, style, vocab_size=300 if style == "gpt2" else 200, min_frequency=1)
        torch.manual_seed(0)
        plmlab.save_pretrained(plmlab.build_model(preset, vocab_size=tok.vocab_size, dropout=0.1), root / name,
                               tokenizer=tok)
    return root


def data_text(stage: str, seed: int) -> str:
    """The training file of `stage`; another seed gives other data of the same shape."""
    texts = lines(seed + 1, 24)
    if stage == "finetune":
        return jsonl([{"text": t, "label": "pos" if i % 2 else "neg"} for i, t in enumerate(texts)])
    if stage == "sft":
        return jsonl([{"prompt": a, "response": b} for a, b in zip(texts[::2], texts[1::2])])
    if stage == "dpo":
        return jsonl([{"prompt": a, "chosen": b, "rejected": c} for a, b, c in zip(texts, texts[1:], texts[2:])])
    return jsonl([{"text": " ".join(texts[i:i + 2])} for i in range(0, len(texts), 2)])  # distill: a corpus


def run(stage: str, root: Path, data: Path, out: Path, **kw) -> None:
    fields = {**RUN, **kw}
    if stage == "finetune":
        o = FinetuneOptions(model=str(root / "bert"), task="classification", train=str(data), out=str(out),
                            epochs=2, **fields)
        finetune(o, log=lambda line: None)
    elif stage == "sft":
        sft(sft_options(str(root / "gpt"), str(out), str(data), epochs=2, **fields), log=lambda line: None)
    elif stage == "dpo":
        dpo(dpo_options(str(root / "gpt"), str(data), str(out), epochs=2, **fields), log=lambda line: None)
    else:
        distill(distill_options(str(root / "gpt"), "half", str(out), corpus=[str(data)], seq_len=16, max_steps=6,
                                **fields), log=lambda line: None)


@pytest.mark.parametrize("stage", ["finetune", "sft", "dpo", "distill"])
def test_resume_refuses_changed_data_and_continues_with_the_same(stage, root, tmp_path, monkeypatch):
    data = tmp_path / "data.jsonl"
    data.write_text(data_text(stage, 0))
    threads = torch.get_num_threads()
    run(stage, root, data, tmp_path / "straight")
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@3")
    with pytest.raises(Interrupted, match="--resume"):
        run(stage, root, data, tmp_path / "cut")
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    data.write_text(data_text(stage, 1))  # same path, same options, other examples
    with pytest.raises(PlmlabError, match="the training data changed since the checkpoint .*--overwrite to start over"):
        run(stage, root, data, tmp_path / "cut", resume=True)
    data.write_text(data_text(stage, 0))
    run(stage, root, data, tmp_path / "cut", resume=True)
    torch.set_num_threads(threads)
    a, b = (plmlab.load_pretrained(tmp_path / name / "final").state_dict() for name in ("straight", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
