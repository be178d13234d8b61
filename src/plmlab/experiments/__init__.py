"""Experiments: the study notes' claims tested, each a small seeded study (`plmlab experiment`).

    from plmlab.experiments import EXPERIMENTS, run_experiment
    folder = run_experiment("norms", scale="smoke", seeds=2, out="experiments")
    print((folder / "report.md").read_text())

One module per study in `studies/` defines `EXPERIMENT` (base.Experiment); adding a study is a
module plus its name in studies/__init__.py's MODULES. Shared pieces: `harness` (train through the real Trainer,
evaluate, time), `stats` (intervals over seeds, Welch's test), `runner` (resumable runs),
`report` (report.md, results.json, plots from saved runs).
"""

from __future__ import annotations

from .base import SCALES, Arm, Experiment, PlotSpec, Summary
from .report import write_index, write_report
from .runner import run_experiment
from .studies import EXPERIMENTS, get_experiment

__all__ = ["EXPERIMENTS", "SCALES", "Arm", "Experiment", "PlotSpec", "Summary", "get_experiment",
           "run_experiment", "write_index", "write_report"]
