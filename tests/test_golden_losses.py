"""Golden losses: the first 20 per-step training losses of three fixed tiny runs, recorded
before the trainer was rebuilt (issue 9). Any change to the training path that alters the
arithmetic of a step (batch order, masking draws, loss weighting, optimizer, schedule) shows
here as a difference in the recorded floats; they must stay bit-identical on CPU fp32.
The runs name the recipe they were recorded with (AdamW, cosine), which is no longer the default.

Regenerate (only for a deliberate change of numerics, said in the commit):
    PLMLAB_WRITE_GOLDEN=1 python -m pytest tests/test_golden_losses.py
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from plmlab.train import PretrainOptions, pretrain, read_metrics

GOLDEN = Path(__file__).parent / "golden" / "losses.json"
WORDS = ("the a parser module reads writes returns value file error list token cache builds "
         "stream buffer opens closes path name").split()
RUNS = {
    "gpt-tiny": {"preset": "gpt-tiny", "objective": "clm"},
    "bert-tiny": {"preset": "bert-tiny", "objective": "mlm+nsp"},
    "t5-tiny": {"preset": "t5-tiny", "objective": "span-corruption"},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("golden") / "corpus.jsonl"
    docs = [" ".join(" ".join(rng.choices(WORDS, k=rng.randint(5, 11))).capitalize() + "."
                     for _ in range(rng.randint(3, 7))) for _ in range(60)]
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
    return path


@pytest.mark.parametrize("name", sorted(RUNS))
def test_first_20_losses_are_bit_identical(tmp_path, corpus, name):
    out = tmp_path / name
    pretrain(PretrainOptions(out=str(out), corpus=[str(corpus)], max_steps=20, batch_size=4, seq_len=32,
                             eval_every=0, save_every=0, sample_tokens=0, seed=3, threads=1, progress="none",
                             vocab_size=512, optimizer="adamw", schedule="cosine", **RUNS[name]))
    losses = [r["loss"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert len(losses) == 20
    if os.environ.get("PLMLAB_WRITE_GOLDEN"):
        golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        golden[name] = losses
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert losses == golden[name]  # exact: repr round-trips every float
