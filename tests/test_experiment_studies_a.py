"""Each of the studies (masking, roberta-formats, nsp-vs-sop, albert, objectives, icl,
batch-size, norms) end to end at --scale smoke: runs, the table, the verdict, the plots."""

from __future__ import annotations

import json

import pytest

from plmlab.experiments import get_experiment, run_experiment


def _check(folder, name):
    report = (folder / "report.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert report.startswith(f"## {name}\n") and "**Verdict.**" in report
    assert results["rows"] and all(len(row) == len(results["columns"]) for row in results["rows"])
    for line in report.splitlines():
        if line.startswith("!["):
            png = folder / line[line.index("](") + 2:-1]
            assert png.stat().st_size > 1000
    return report, results


def test_norms_smoke(tmp_path):
    folder = run_experiment("norms", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    report, results = _check(folder, "norms")
    assert [row[0] for row in results["rows"]] == ["layernorm", "rmsnorm"]
    runs = {p.stem: json.loads(p.read_text()) for p in (folder / "runs").iterdir()}
    assert set(runs) == {"layernorm-s0", "layernorm-s1", "rmsnorm-s0", "rmsnorm-s1"}
    # the arms differ by the norm only: RMSNorm has no bias, so fewer parameters; seeds differ
    ln, rms = runs["layernorm-s0"]["metrics"], runs["rmsnorm-s0"]["metrics"]
    assert rms["params"] < ln["params"]
    assert runs["layernorm-s0"]["metrics"]["val_loss"] != runs["layernorm-s1"]["metrics"]["val_loss"]
    assert "Zhang & Sennrich" in report and ("within noise" in report or "beyond noise" in report)
