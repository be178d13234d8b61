"""Experiments: the study notes' claims tested, each a small seeded study (`plmlab experiment`).

    from plmlab.experiments import EXPERIMENTS, run_experiment
    folder = run_experiment("norms", scale="smoke", seeds=2, out="experiments")
    print((folder / "report.md").read_text())

One module per study in `studies/` defines `EXPERIMENT` (base.Experiment); adding a study is a
module plus its name in MODULES. Shared pieces: `harness` (train through the real Trainer,
evaluate, time), `stats` (intervals over seeds, Welch's test), `runner` (resumable runs),
`report` (report.md, results.json, plots from saved runs).
"""

from __future__ import annotations

import difflib

from ..errors import PlmlabError
from ..registry import import_present
from .base import SCALES, Arm, Experiment, PlotSpec, Summary

MODULES = ("masking", "roberta-formats", "nsp-vs-sop", "albert", "objectives", "icl", "batch-size", "norms",
           "norm-placement", "activations", "positions", "attention-sharing", "decoding", "vocab")

EXPERIMENTS: dict[str, Experiment] = {
    m.EXPERIMENT.name: m.EXPERIMENT for m in import_present(f"{__name__}.studies", MODULES)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PlmlabError(f"unknown experiment {name!r}{hint} (plmlab experiment list shows them)")
    return EXPERIMENTS[name]


from .report import write_index, write_report  # noqa: E402  (report and runner look experiments up here)
from .runner import run_experiment  # noqa: E402

__all__ = ["EXPERIMENTS", "SCALES", "Arm", "Experiment", "PlotSpec", "Summary", "get_experiment",
           "run_experiment", "write_index", "write_report"]
