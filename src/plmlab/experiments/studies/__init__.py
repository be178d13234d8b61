"""One module per experiment, each defining `EXPERIMENT` (plmlab.experiments.base.Experiment),
and the registry of them all (re-exported by plmlab.experiments). Here, below report.py and
runner.py, so that both look studies up without importing the package that imports them."""

from __future__ import annotations

import difflib

from ...errors import PlmlabError
from ...registry import import_present
from ..base import Experiment

MODULES = ("masking", "roberta-formats", "nsp-vs-sop", "albert", "objectives", "icl", "batch-size", "norms",
           "norm-placement", "activations", "positions", "attention-sharing", "decoding", "vocab")

EXPERIMENTS: dict[str, Experiment] = {m.EXPERIMENT.name: m.EXPERIMENT for m in import_present(__name__, MODULES)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        close = difflib.get_close_matches(name, list(EXPERIMENTS), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise PlmlabError(f"unknown experiment {name!r}{hint} (plmlab experiment list shows them)")
    return EXPERIMENTS[name]
