"""Several checkpoints side by side: one table (rows: models, columns: metrics) and a bar plot.

A result's columns are its plain numeric metrics; the built-in suite's per-task rows become
one column each (`TASK k-shot`, its accuracy) next to `core`. Counts and speeds are left out of
the plot (they compare no quality), not out of the table.

    +------------+------------+---------------+
    | model      | perplexity | bits_per_byte |
    +------------+------------+---------------+
"""

from __future__ import annotations

import math
from pathlib import Path

from ..errors import PlmlabError
from ..plotting import FORMATS, panel_grid, save_figure  # the project's plotting style and atomic write
from .result import EvalResult

NOT_PLOTTED = frozenset({"n", "tokens", "bytes", "targets", "examples", "pieces", "words", "entities",
                         "entities_predicted", "masked_tokens", "max_length", "stride", "tokens_per_s", "items_per_s"})


def columns_of(result: EvalResult) -> dict[str, float]:
    """The result's numbers, one per column (see the module docstring)."""
    out: dict[str, float] = {}
    for key, value in result.metrics.items():
        if key == "tasks" and isinstance(value, list):
            for row in value:
                out[f"{row['task']} {row['shots']}-shot"] = float(row["accuracy"])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


def compare_table(results: dict[str, EvalResult]) -> tuple[list[str], list[list[float | None]]]:
    """(columns, one row per model in order); a metric a model lacks is None."""
    per_model = {name: columns_of(r) for name, r in results.items()}
    columns = list(dict.fromkeys(c for cols in per_model.values() for c in cols))
    return columns, [[cols.get(c) for c in columns] for cols in per_model.values()]


def _cell(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"


def format_table(names: list[str], columns: list[str], rows: list[list[float | None]], first: str = "model") -> str:
    """An aligned plain-text table: a header (`first` over the row names), a rule, one line per row."""
    cells = [[first, *columns]] + [[n, *map(_cell, row)] for n, row in zip(names, rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths)))
             for line in cells]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def plot_compare(names: list[str], columns: list[str], rows: list[list[float | None]], out: str | Path) -> Path:
    """A bar plot PNG: one panel per quality metric, one bar (colour) per model."""
    target = Path(out)
    if target.suffix.lower() not in FORMATS:
        raise PlmlabError(f"--plot {out}: give an image file ({', '.join(FORMATS)})")
    shown = [i for i, c in enumerate(columns) if c not in NOT_PLOTTED]
    if not shown:
        raise PlmlabError("nothing to plot: the results have no quality metric")
    fig, axes, colors = panel_grid(len(shown), min(3, len(shown)), 4.2, 3.2, len(names))
    for ax, i in zip(axes, shown):
        values = [row[i] if row[i] is not None else 0.0 for row in rows]
        bars = ax.bar(range(len(names)), values, color=colors)
        ax.bar_label(bars, labels=[_cell(row[i]) for row in rows], fontsize=8)
        ax.set_title(columns[i], fontsize=10)
        ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
        ax.grid(True, axis="y", alpha=0.3)
    for ax in axes[len(shown):]:
        ax.remove()
    fig.suptitle(" vs ".join(names) if len(names) <= 3 else f"{len(names)} models")
    return save_figure(fig, target)
