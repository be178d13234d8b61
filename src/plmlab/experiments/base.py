"""What an experiment is: a claim, the paper's number, arms, one run per arm x seed, a summary.

    EXPERIMENT = Experiment(
        name="norms", claim="RMSNorm trains as well as LayerNorm and steps faster",
        paper="Zhang & Sennrich 2019: ...", runtime="~1 min",
        arms=lambda scale: [Arm("layernorm", {...}), Arm("rmsnorm", {...})],
        run=run_arm,            # (arm, seed, scale, workdir) -> {"metrics": {...}, "curves": {...}}
        summarize=summarize)    # {arm name: [run records, by seed]} -> Summary

A run record is JSON: the study's own `metrics` (numbers) and `curves` (name -> [[x, y], ...]);
the runner adds arm, params, seed, scale and seconds. `summarize` sees only saved records, so a
report rebuilt later from the run files is the one written at run time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

SCALES = ("smoke", "default", "large")  # seconds (tests) / the docs run on 2 cores / a GPU
DEFAULT_SEEDS = {"smoke": 1, "default": 3, "large": 3}


@dataclass(frozen=True)
class Arm:
    name: str  # a file-name-safe label: runs/NAME-sSEED.json
    params: dict[str, Any] = field(default_factory=dict)  # JSON-able; what `run` varies


@dataclass(frozen=True)
class PlotSpec:
    """One PNG beside report.md. kind "curve": the mean over seeds of curve `metric` per arm;
    kind "bar": metric `metric` per arm, mean with its 95 % interval."""

    file: str  # "loss.png"
    title: str
    kind: str  # curve | bar
    metric: str
    xlabel: str = "step"
    ylabel: str = ""


@dataclass(frozen=True)
class Summary:
    columns: list[str]
    rows: list[list[str]]  # formatted cells, one row per arm (or per arm x evaluation)
    verdict: str  # compares with the paper whatever the outcome, says what is within noise
    plots: list[PlotSpec] = field(default_factory=list)
    results: dict[str, Any] = field(default_factory=dict)  # numbers for results.json


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # one line: the claim it tests
    paper: str  # what the paper / notes reported, with the citation
    runtime: str  # estimated wall time at the default scale on 2 cores, all seeds
    arms: Callable[[str], list[Arm]]  # scale -> arms
    run: Callable[[Arm, int, str, Any], dict]  # (arm, seed, scale, workdir: Path) -> run record
    summarize: Callable[[dict[str, list[dict]]], Summary]  # arm -> records by seed
    seeds: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_SEEDS))  # default seeds per scale
    corpus: str | dict[str, str] = "builtin"  # what it trains on: builtin | builtin:docs, or one per scale
    # The training gate (report.py): off for a study whose claim is not about its models' loss
    # (a timing, a decoding rule, a synthetic task), which a model at the unigram plateau still tests.
    loss_gate: bool = True

    def corpus_for(self, scale: str) -> str:
        """The corpus of the runs at `scale` (meta.json and the report name it)."""
        return self.corpus if isinstance(self.corpus, str) else self.corpus.get(scale, "builtin")
