"""Training curves from `metrics.jsonl` files (`plmlab plot`).

    from plmlab.plotting import plot_runs, read_metrics
    plot_runs(["runs/gpt-a", "runs/gpt-b"], "compare.png", metrics=["loss", "val_loss", "lr"])

One PNG holds a grid with one panel per metric; several runs are overlaid, one colour each,
with the run directory names in the legend. Training metrics are drawn raw (faint) plus a
smoothed curve; `val_*` metrics are markers, and a `val_X` whose `X` is also plotted joins X's
panel (validation loss sits on the training-loss curve, where it reads best):

    +---------------------------+---------------+----------------+
    | loss   ~~~~ train  o val  | lr            | tokens_per_s   |
    +---------------------------+---------------+----------------+

matplotlib is an optional extra (`pip install plmlab[plot]`), imported only when drawing; the
figure is rendered with the Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from .errors import PlmlabError

METRICS_FILE = "metrics.jsonl"  # as written by plmlab.train.metrics
DEFAULT_METRICS = ("loss", "val_loss", "lr", "muon_lr", "tokens_per_s")
# A metric drawn in another's panel when both are plotted (besides val_X in X's): a Muon run's
# two learning rates, AdamW's `lr` and Muon's `muon_lr`, on one log axis (one curve, two scales).
COMPANIONS = {"muon_lr": "lr"}
X_AXES = ("step", "tokens")
FORMATS = (".png", ".svg", ".pdf")
# Deterministic or cumulative fields: smoothing them would only blur them.
UNSMOOTHED = frozenset({"lr", "muon_lr", "tokens", "epoch", "skipped", "elapsed_s"})


# ---------------------------------------------------------------------- reading
def metrics_path(path: str | Path) -> Path:
    """A run directory's metrics.jsonl (or `path` itself when it is the file)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    elif not path.exists():
        raise PlmlabError(f"{path}: no such run directory")
    if not path.is_file():
        raise PlmlabError(f"{path}: not found (is this a run directory of plmlab pretrain?)")
    return path


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a run's metrics.jsonl (`path`: the run directory or the file).

    A run killed mid-write may leave its last line cut short: an unparsable *last* line is
    skipped; a bad line anywhere else raises PlmlabError naming file:line. Blank lines are
    ignored; an empty file gives [].
    """
    path = metrics_path(path)
    # Bytes, decoded per line: a kill can also split a multi-byte character on the last line.
    lines = [(i, line) for i, line in enumerate(path.read_bytes().split(b"\n"), 1) if line.strip()]
    records = []
    for k, (number, line) in enumerate(lines):
        try:
            record = json.loads(line.decode("utf-8", errors="replace"))
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        except ValueError as e:
            if k == len(lines) - 1:
                break  # the truncated tail of a killed run
            raise PlmlabError(f"{path}:{number}: not a metrics record ({e})") from None
        records.append(record)
    return records


def _number(value) -> float | None:
    """A finite float, or None (bools, strings such as "nan" for a skipped step, null)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def numeric_fields(records: list[dict]) -> set[str]:
    return {k for r in records for k, v in r.items() if k != "step" and _number(v) is not None}


def metric_series(records: list[dict], metric: str, x: str = "step") -> tuple[np.ndarray, np.ndarray]:
    """(xs, ys) of one metric, ordered by step; the last value wins for a repeated step.

    With x="tokens", records without a `tokens` field (separate evaluation records) get the
    token count interpolated from the training records' step -> tokens.
    """
    if x not in X_AXES:
        raise PlmlabError(f"unknown x axis {x!r} (choose from {', '.join(X_AXES)})")
    by_step = {}
    for r in records:
        step, value = _number(r.get("step")), _number(r.get(metric))
        if step is not None and value is not None:
            by_step[step] = value
    steps = np.array(sorted(by_step), dtype=np.float64)  # (N,)
    ys = np.array([by_step[s] for s in steps], dtype=np.float64)  # (N,)
    if x == "step":
        return steps, ys
    known = {}
    for r in records:
        step, tokens = _number(r.get("step")), _number(r.get("tokens"))
        if step is not None and tokens is not None:
            known[step] = tokens
    known = sorted(known.items())
    if not known:
        raise PlmlabError("--x tokens: the records have no `tokens` field (use --x step)")
    ks, kt = np.array(known, dtype=np.float64).T  # (K,), (K,)
    return np.interp(steps, ks, kt), ys


# ---------------------------------------------------------------------- smoothing
def ema(values: np.ndarray, span: int) -> np.ndarray:
    """Exponential moving average with alpha = 2 / (span + 1), debiased as TensorBoard does
    (divided by 1 - (1 - alpha)^t) so the curve does not start near zero. span <= 1: a copy."""
    values = np.asarray(values, dtype=np.float64)
    if span <= 1 or values.size == 0:
        return values.copy()
    alpha, acc, out = 2.0 / (span + 1), 0.0, np.empty_like(values)
    for t, v in enumerate(values):
        acc = (1 - alpha) * acc + alpha * v
        out[t] = acc / (1 - (1 - alpha) ** (t + 1))
    # A weighted mean stays within the data's range; clipping removes the rounding of the
    # debiasing, which would otherwise show as wiggles on a constant series (autoscaled axes).
    return np.clip(out, values.min(), values.max())


def auto_span(n_points: int) -> int:
    """The default smoothing: about 5 % of the points (none below 40 points)."""
    return max(1, n_points // 20)


# ---------------------------------------------------------------------- plotting
def run_labels(paths: list[Path]) -> list[str]:
    """Legend labels: the run directory names, or the paths as given when two names collide."""
    dirs = [p.parent if p.name == METRICS_FILE else p for p in paths]
    names = [d.name or d.resolve().name for d in dirs]
    if len(set(names)) < len(names):
        names = [str(d) for d in dirs]
    return names


def default_out(dirs: list[Path]) -> Path:
    """DIR/plots.png for one run, ./compare.png for several."""
    if len(dirs) == 1:
        run = dirs[0].parent if dirs[0].is_file() else dirs[0]
        return run / "plots.png"
    return Path("compare.png")


def resolve_out(out: str | Path | None, dirs: list[Path]) -> Path:
    """`out` as a file (.png/.svg/.pdf) or a directory (existing, trailing '/', or no suffix)."""
    if out is None:
        return default_out(dirs)
    name = default_out(dirs).name
    text, out = str(out), Path(out)
    if out.is_dir() or text.endswith(("/", os.sep)) or not out.suffix:
        return out / name
    if out.suffix.lower() not in FORMATS:
        raise PlmlabError(f"--out {out}: unsupported image format {out.suffix!r} (use {', '.join(FORMATS)})")
    return out


def panels_for(metrics: list[str]) -> list[list[str]]:
    """Group metrics into panels: `val_X` joins X's panel when X is plotted too, and so does a
    companion (COMPANIONS: `muon_lr` joins `lr`)."""
    panels: dict[str, list[str]] = {}
    for m in metrics:
        base = m[4:] if m.startswith("val_") and m[4:] in metrics else m
        base = COMPANIONS.get(base, base) if COMPANIONS.get(base) in metrics else base
        panels.setdefault(base, []).append(m)
    return list(panels.values())


def choose_metrics(runs: list[list[dict]], labels: list[str], metrics) -> list[str]:
    """The metrics to draw: the defaults that some run has, or exactly those asked for."""
    have = set().union(*(numeric_fields(r) for r in runs))
    if metrics is None:
        chosen = [m for m in DEFAULT_METRICS if m in have]
        if not chosen:
            raise PlmlabError(f"no numeric values for any of {', '.join(DEFAULT_METRICS)} in "
                              f"{', '.join(labels)} (use --metrics; available: {', '.join(sorted(have)) or 'none'})")
        return chosen
    chosen = list(dict.fromkeys(m.strip() for m in metrics if m.strip()))
    if not chosen:
        raise PlmlabError("no metrics given")
    missing = [m for m in chosen if m not in have]
    if missing:
        raise PlmlabError(f"no numeric values for metric {', '.join(map(repr, missing))} in any run "
                          f"(available: {', '.join(sorted(have)) or 'none'})")
    return chosen


def _matplotlib():
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
        from matplotlib.ticker import EngFormatter, LogFormatter
    except ImportError:
        raise PlmlabError("plotting needs matplotlib: pip install plmlab[plot]") from None
    return Figure, FigureCanvasAgg, Line2D, EngFormatter, LogFormatter


def panel_grid(n_panels: int, ncols: int, width: float, height: float, n_colors: int):
    """(figure, axes, colors): an Agg figure (renders to a file, no display needed) with a grid
    of n_panels axes in `ncols` columns, each width x height inches, and one colour per series."""
    Figure, FigureCanvasAgg = _matplotlib()[:2]
    nrows = math.ceil(n_panels / ncols)
    fig = Figure(figsize=(width * ncols, height * nrows + 0.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    return fig, axes, [f"C{i % 10}" for i in range(n_colors)]


def save_figure(fig, target: Path) -> Path:
    """Write the figure atomically (a finished file or none)."""
    return _save(fig, target)


def plot_runs(dirs, out=None, metrics=None, x: str = "step", smooth: int | None = None,
              log_y: bool = False) -> Path:
    """Draw the runs' curves into one image; returns its path.

    dirs: run directories (or metrics.jsonl files). out: a file or directory (default
    DIR/plots.png for one run, ./compare.png for several). metrics: names of numeric fields
    (default: those of DEFAULT_METRICS that some run has; asked-for metrics must exist).
    x: "step" or "tokens". smooth: EMA span in logged points (default ~5 % of the points;
    0 or 1: raw only). log_y: logarithmic y axes.
    """
    if not dirs:
        raise PlmlabError("no run directories given")
    if x not in X_AXES:
        raise PlmlabError(f"unknown x axis {x!r} (choose from {', '.join(X_AXES)})")
    paths = [metrics_path(d) for d in dirs]
    runs = [read_metrics(p) for p in paths]
    for path, records in zip(paths, runs):
        if not records:
            raise PlmlabError(f"{path}: no metrics records yet (empty file)")
    labels = run_labels(paths)
    chosen = choose_metrics(runs, labels, metrics)
    target = resolve_out(out, [Path(d) for d in dirs])
    _, _, Line2D, EngFormatter, LogFormatter = _matplotlib()

    panels = panels_for(chosen)
    ncols = 1 if len(panels) == 1 else 2 if len(panels) in (2, 4) else 3
    fig, axes, colors = panel_grid(len(panels), ncols, 5.5, 3.6, len(runs))
    for ax, panel in zip(axes, panels):
        _draw_panel(ax, panel, runs, colors, x, smooth, log_y)
        if len(panel) > 1:
            _style_legend(ax, Line2D)
        if x == "tokens":
            ax.xaxis.set_major_formatter(EngFormatter())
        if ax.get_yscale() == "log":  # plain "2", "0.001" rather than mathtext powers of ten
            ax.yaxis.set_major_formatter(LogFormatter())
            ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.5)))
    for ax in axes[len(panels):]:
        ax.remove()
    fig.suptitle(labels[0] if len(runs) == 1 else " vs ".join(labels) if len(runs) <= 3
                 else f"{len(runs)} runs")
    if len(runs) > 1:
        handles = [Line2D([], [], color=c, lw=2) for c in colors]
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(runs), 4), frameon=False)
    return _save(fig, target)


def _draw_panel(ax, panel: list[str], runs: list[list[dict]], colors: list[str], x: str,
                smooth: int | None, log_y: bool) -> None:
    """One metric (or a metric and its val_ metric) for every run."""
    series = {(m, i): metric_series(r, m, x) for m in panel for i, r in enumerate(runs)}
    longest = max(len(ys) for _, ys in series.values())
    span = auto_span(longest) if smooth is None else smooth
    companions = {COMPANIONS[m] for m in panel if m in COMPANIONS}
    for (m, i), (xs, ys) in series.items():
        if not len(ys):
            continue
        if m in COMPANIONS or m in companions:  # a Muon run's lr panel: AdamW solid, Muon dotted
            ax.plot(xs, ys, color=colors[i], lw=1.3, ls=":" if m in COMPANIONS else "-",
                    label="Muon" if m in COMPANIONS else "AdamW")
        elif m.startswith("val_"):
            ax.plot(xs, ys, color=colors[i], marker="o", ms=4, lw=0.8, ls="--", label="validation")
        elif span > 1 and m not in UNSMOOTHED and len(ys) > 2:
            ax.plot(xs, ys, color=colors[i], lw=0.8, alpha=0.25, label="_raw")
            ax.plot(xs, ema(ys, span), color=colors[i], lw=1.6, label=f"train (EMA {span})")
        else:
            ax.plot(xs, ys, color=colors[i], lw=1.3, marker="o" if len(ys) == 1 else None, label="train")
    ax.set_title(" / ".join(panel), fontsize=10)
    ax.set_xlabel(x)
    ax.grid(True, alpha=0.3)
    if (log_y or companions) and any((ys > 0).any() for _, ys in series.values()):
        ax.set_yscale("log")


def _style_legend(ax, Line2D) -> None:
    """Say which line style is train and which validation, in grey: the figure legend names the runs."""
    styles = {}
    for h in ax.get_lines():
        if not h.get_label().startswith("_") and h.get_label() not in styles:
            styles[h.get_label()] = Line2D([], [], color="0.35", marker=h.get_marker(), ls=h.get_linestyle(),
                                           lw=h.get_linewidth())
    ax.legend(styles.values(), styles.keys(), fontsize=8)


def _save(fig, target: Path) -> Path:
    """Write through a temporary file: an interrupted save never leaves half an image."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp")
        fig.savefig(tmp, format=target.suffix[1:].lower())
        os.replace(tmp, target)
    except OSError as e:
        raise PlmlabError(f"cannot write {target}: {e.strerror or e}") from None
    return target
