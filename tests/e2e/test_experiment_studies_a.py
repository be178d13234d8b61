"""Each of the studies (masking, roberta-formats, nsp-vs-sop, albert, objectives, icl,
batch-size, norms) end to end at --scale smoke: runs, the table, the verdict, the plots."""

from __future__ import annotations

import pytest

from plmlab.experiments import run_experiment
from study_helpers import check_report, run_records


def test_norms_smoke(tmp_path):
    folder = run_experiment("norms", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    report, results = check_report(folder, "norms")
    assert [row[0] for row in results["rows"]] == ["layernorm", "rmsnorm"]
    runs = run_records(folder)
    assert set(runs) == {"layernorm-s0", "layernorm-s1", "rmsnorm-s0", "rmsnorm-s1"}
    # the arms differ by the norm only: RMSNorm has no bias, so fewer parameters; seeds differ
    ln, rms = runs["layernorm-s0"]["metrics"], runs["rmsnorm-s0"]["metrics"]
    assert rms["params"] < ln["params"]
    assert runs["layernorm-s0"]["metrics"]["val_loss"] != runs["layernorm-s1"]["metrics"]["val_loss"]
    own = results.get("ungated_verdict", results["verdict"])  # the study's text, before the training gate
    assert "Zhang & Sennrich" in report and ("within noise" in own or "beyond noise" in own)


def test_masking_smoke(tmp_path):
    folder = run_experiment("masking", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    report, results = check_report(folder, "masking")
    assert [row[0] for row in results["rows"]] == ["80-10-10", "100-mask", "80-0-20", "static-10"]
    for run in run_records(folder).values():
        m = run["metrics"]
        assert 0 <= m["mlm_accuracy"] <= 1 and 0 <= m["finetune_accuracy"] <= 1 and m["epochs_seen"] > 0
    assert run_records(folder)["100-mask-s0"]["params"] == {"replace_probs": [1.0, 0.0, 0.0], "masking": "dynamic"}
    assert "Devlin et al. 2019" in report


def test_nsp_vs_sop_smoke(tmp_path):
    folder = run_experiment("nsp-vs-sop", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    report, results = check_report(folder, "nsp-vs-sop")
    assert [row[0] for row in results["rows"]] == ["nsp", "sop"]
    for run in run_records(folder).values():
        assert {"on_nsp", "on_sop", "topic_nsp", "topic_sop"} <= set(run["metrics"])
    assert "52.0 %" in report


def test_topic_baseline_reads_the_overlap():
    import torch

    from plmlab.experiments.studies.nsp_vs_sop import topic_baseline

    # label 0 (B follows A): B repeats A's pieces; label 1: B shares none. Types: 0 for A, 1 for B.
    rows, labels = [], []
    for i in range(16):
        a = [101, 10 + i, 11 + i, 12 + i, 102]
        b = [10 + i, 11 + i, 12 + i, 102] if i % 2 == 0 else [60 + i, 61 + i, 62 + i, 102]
        rows.append(a + b)
        labels.append(i % 2)
    batch = {"input_ids": torch.tensor(rows), "token_type_ids": torch.tensor([[0] * 5 + [1] * 4] * 16),
             "attention_mask": torch.ones(16, 9, dtype=torch.long), "next_sentence_label": torch.tensor(labels)}
    assert topic_baseline([batch], "next_sentence_label") == 1.0


def test_albert_smoke(tmp_path):
    folder = run_experiment("albert", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    check_report(folder, "albert")
    params = {name.removesuffix("-s0"): run["metrics"]["params"] for name, run in run_records(folder).items()}
    assert params["albert"] < params["factorised"] < params["bert"] and params["shared"] < params["bert"]
    assert params["albert"] < params["shared"]


@pytest.mark.slow
def test_objectives_smoke(tmp_path):
    folder = run_experiment("objectives", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    report, results = check_report(folder, "objectives")
    assert [row[0] for row in results["rows"]] == ["clm", "mlm", "span-corruption", "glm"]
    for run in run_records(folder).values():
        assert -1 <= run["metrics"]["core"] <= 1 and {"cloze@0", "next_sentence@0", "swapped_words@0"} <= set(run["metrics"])


@pytest.mark.slow
def test_icl_smoke(tmp_path):
    folder = run_experiment("icl", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    report, results = check_report(folder, "icl")
    assert results["columns"][2:6] == ["CORE 0-shot", "CORE 1-shot", "CORE 4-shot", "CORE 8-shot"]
    for run in run_records(folder).values():
        assert {"core@0", "core@1", "core@4", "core@8"} <= set(run["metrics"])


@pytest.mark.slow
def test_roberta_formats_smoke(tmp_path):
    folder = run_experiment("roberta-formats", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    check_report(folder, "roberta-formats")
    runs = {name.removesuffix("-s0"): run["metrics"] for name, run in run_records(folder).items()}
    assert len(runs) == 5
    # each arm's batch is scaled to the same real tokens per step (4 windows of 64 at smoke scale)
    for m in runs.values():
        assert m["batch_size"] == max(1, round(4 * 64 / m["tokens_per_example"]))
    assert runs["segment-pair"]["val_nsp_accuracy"] == 0.5  # no pair head without NSP


def test_batch_size_smoke(tmp_path):
    folder = run_experiment("batch-size", scale="smoke", seeds=1, out=tmp_path, log=lambda *_: None)
    check_report(folder, "batch-size")
    runs = run_records(folder)
    assert len({run["metrics"]["tokens"] for run in runs.values()}) == 1  # equal tokens in every arm
    assert runs["batch-8-s0"]["params"]["lr"] == pytest.approx(2 * runs["batch-2-s0"]["params"]["lr"])
