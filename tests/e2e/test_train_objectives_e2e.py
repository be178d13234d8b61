"""One short `plmlab pretrain` per family objective: the accuracy fields in metrics.jsonl, the
summary's accuracies and the end-of-run demonstration."""

from __future__ import annotations

import json
import random

import pytest

from plmlab.cli import main
from plmlab.train import read_metrics

WORDS = "the a parser module reads writes returns value file error list token cache builds".split()
COMMON = ["--max-steps", "3", "--batch-size", "4", "--seq-len", "48", "--eval-every", "3", "--eval-batches", "2",
          "--threads", "1", "--progress", "plain", "--seed", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(2)
    path = tmp_path_factory.mktemp("e2e") / "corpus.jsonl"
    lines = [json.dumps({"text": " ".join(" ".join(rng.choices(WORDS, k=rng.randint(6, 10))).capitalize() + "."
                                          for _ in range(rng.randint(2, 6)))}) for _ in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


CASES = [
    (["--preset", "bert-tiny", "--objective", "mlm+nsp"], ("mlm", "nsp"), "fill-mask"),
    (["--preset", "roberta-tiny", "--objective", "mlm", "--input-format", "doc-sentences"], ("mlm",), "fill-mask"),
    (["--preset", "albert-tiny", "--objective", "mlm+sop"], ("mlm", "sop"), "fill-mask"),
    (["--preset", "t5-tiny", "--objective", "span-corruption", "--noise-density", "0.3"], ("token",), "span-filling"),
    (["--preset", "glm-tiny", "--objective", "glm-mix"], ("token",), "fill-blanks"),
    (["--preset", "albert-tiny", "--objective", "sop"], ("sop",), None),  # pair labels only: no token labels
]


@pytest.mark.parametrize("args,accuracies,demo", CASES, ids=[f"{c[0][1]}-{c[0][3]}" for c in CASES])
def test_family_objective_end_to_end(tmp_path, corpus, capsys, args, accuracies, demo):
    out = tmp_path / "run"
    assert main(["pretrain", "--out", str(out), "--corpus", str(corpus), *COMMON, *args]) == 0
    printed = capsys.readouterr()
    records = read_metrics(out / "metrics.jsonl")
    last = records[-1]
    for name in accuracies:
        assert 0.0 <= last[f"val_{name}_accuracy"] <= 1.0
        assert all(f"{name}_accuracy" in r for r in records)  # train lines carry them too
        assert f"val_{name}_acc " in printed.err  # the progress line
        assert f"{name}_accuracy " in printed.out  # the summary
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["accuracies"]) == {f"val_{n}_accuracy" for n in accuracies}
    assert (summary["demo"] or {}).get("kind") == demo
    if demo == "fill-mask":
        assert len(summary["demo"]["predictions"]) == 5 and "top 5:" in printed.out
    elif demo == "span-filling":
        assert "<extra_id_0>" in summary["demo"]["input"] and "span filling:" in printed.out
    elif demo == "fill-blanks":
        assert "[MASK]" in summary["demo"]["text"] and len(summary["demo"]["blanks"]) == 1
