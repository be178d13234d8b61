"""Pieces of a study's summary: per-arm values over seeds, table rows of mean ± CI, the
standard record of a language-model run (loss curves, validation loss, step time)."""

from __future__ import annotations

from typing import Any

from . import stats
from .harness import Trained, curve_points


def values(runs: dict[str, list[dict]], arm: str, metric: str) -> list[float]:
    """The metric of every seed of one arm."""
    return [float(r["metrics"][metric]) for r in runs[arm]]


def table(runs: dict[str, list[dict]], columns: list[tuple[str, str, int]], first: str = "arm"):
    """(column names, rows): one row per arm, one `mean ± CI` cell per (metric, label, digits)."""
    names = [first] + [label for _, label, _ in columns]
    rows = [[arm] + [stats.fmt_ci(values(runs, arm, metric), digits) for metric, _, digits in columns]
            for arm in runs]
    return names, rows


def means(runs: dict[str, list[dict]], metric: str) -> dict[str, Any]:
    """arm -> {mean, ci (half-width or None), values}: the numbers results.json keeps."""
    out = {}
    for arm in runs:
        v = values(runs, arm, metric)
        m, h = stats.mean_ci(v)
        out[arm] = {"mean": m, "ci": h, "values": v}
    return out


def lm_record(trained: Trained, every: int = 1, **extra) -> dict:
    """The record of one language-model run: validation loss and its unigram baseline, last train
    loss, median step time, parameters, tokens seen, and the loss curves against steps, training
    seconds and tokens."""
    metrics = {"val_loss": trained.val_loss, "train_loss": trained.curve[-1]["loss"],
               "step_seconds": trained.step_seconds, "params": trained.params,
               "tokens": trained.curve[-1]["tokens"], "train_seconds": trained.curve[-1]["seconds"],
               **{k: v for k, v in (trained.evals[-1] if trained.evals else {}).items()
                  if k.startswith("val_") and k != "val_ppl"}}
    if trained.unigram_loss is not None:  # the report's training gate (report.py) reads it
        metrics["unigram_loss"] = trained.unigram_loss
    metrics.update(extra)
    return {"metrics": metrics,
            "curves": {"loss": curve_points(trained.curve, "step", "loss", every),
                       "loss_vs_seconds": curve_points(trained.curve, "seconds", "loss", every),
                       "loss_vs_tokens": curve_points(trained.curve, "tokens", "loss", every)}}
