"""Shared by the study tests: what every study's report must hold, and its saved run records."""

from __future__ import annotations

import json


def check_report(folder, name):
    """report.md (a claim, a verdict, plots that exist) and results.json (a full table)."""
    report = (folder / "report.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert report.startswith(f"## {name}\n") and "**Verdict.**" in report
    assert results["rows"] and all(len(row) == len(results["columns"]) for row in results["rows"])
    for line in report.splitlines():
        if line.startswith("!["):
            png = folder / line[line.index("](") + 2:-1]
            assert png.stat().st_size > 1000
    return report, results


def run_metrics(folder) -> dict[str, dict]:
    """ARM-sSEED -> that run's metrics."""
    return {name: record["metrics"] for name, record in run_records(folder).items()}


def run_records(folder) -> dict[str, dict]:
    """ARM-sSEED -> the whole saved run record (metrics, curves, params, seed, ...)."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((folder / "runs").iterdir())}
