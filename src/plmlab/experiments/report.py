"""`write_report(folder)`: report.md, results.json and the PNG plots of a study, from its saved
runs (runs/*.json) and meta.json only, so rebuilding a report later gives the same files.

`write_index(folders, index)` assembles one Markdown page (docs/experiments.md) from several
reports, with image links made relative to the page.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

from ..data.files import write_text_atomic
from ..errors import PlmlabError, warn
from ..plotting import panel_grid, save_figure
from . import stats
from .base import SCALES, Experiment, PlotSpec, Summary
from .studies import get_experiment

# How far below the unigram baseline (the validation targets' cross-entropy under the training
# split's token frequencies) at least one arm must end for a study's verdict to stand. A model at
# the plateau predicts token frequencies and nothing else, so arms that differ in what the papers
# vary (norms, masking, batch size ...) all score alike there and "within noise" is guaranteed;
# 0.3 nats (a perplexity 26 % below the baseline's) asks that the context be used, and it exceeds
# the smallest difference the studies' designs could detect (0.12-0.23 nats at the default scale),
# so a model past it is on the part of the curve where arms can separate at all.
GATE_MARGIN = 0.3


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise PlmlabError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise PlmlabError(f"{path}: invalid JSON ({e})") from None


def checked_meta(path: Path) -> dict:
    """meta.json, refused in one line unless it names a study, a scale and a number of seeds."""
    meta = read_json(path)
    seeds = meta.get("seeds") if isinstance(meta, dict) else None
    if (not isinstance(meta, dict) or not isinstance(meta.get("experiment"), str) or meta.get("scale") not in SCALES
            or isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise PlmlabError(f"{path}: not a study's meta.json (expected \"experiment\", \"scale\" one of "
                          f"{', '.join(SCALES)}, and \"seeds\" a positive integer)")
    return meta


def checked_run(path: Path, arm: str, seed: int) -> dict:
    """A saved run, refused in one line unless it is the record of that arm and seed."""
    run = read_json(path)
    if not isinstance(run, dict) or run.get("arm") != arm or run.get("seed") != seed \
            or not isinstance(run.get("metrics"), dict):
        raise PlmlabError(f"{path}: not the saved run of arm {arm} seed {seed} (expected its \"arm\", \"seed\" "
                          "and a \"metrics\" object); delete it and run the study again")
    return run


def load_runs(folder: Path, experiment: Experiment, meta: dict) -> dict[str, list[dict]]:
    """arm name -> its saved runs in seed order (the arms of meta's scale, seeds 0..seeds-1)."""
    runs = {}
    for arm in experiment.arms(meta["scale"]):
        paths = [(folder / "runs" / f"{arm.name}-s{seed}.json", seed) for seed in range(meta["seeds"])]
        runs[arm.name] = [checked_run(p, arm.name, seed) for p, seed in paths if p.is_file()]
    missing = [name for name, found in runs.items() if not found]
    if missing:
        raise PlmlabError(f"{folder}: no finished runs of {', '.join(missing)} yet; "
                          f"run `plmlab experiment run {experiment.name} --out {folder.parent}` to finish them")
    return runs


def write_report(folder: str | Path) -> Path:
    """Rebuild FOLDER/report.md, results.json and the plots; returns report.md's path."""
    folder = Path(folder)
    if not (folder / "meta.json").is_file():
        raise PlmlabError(f"{folder} is not an experiment folder (no meta.json)")
    meta = checked_meta(folder / "meta.json")
    experiment = get_experiment(meta["experiment"])
    runs = load_runs(folder, experiment, meta)
    try:
        summary = experiment.summarize(runs)
    except (KeyError, TypeError, ValueError, IndexError, ZeroDivisionError) as e:  # a run file edited or damaged
        raise PlmlabError(f"{folder}: a saved run lacks what the {experiment.name} study reads "
                          f"({type(e).__name__}: {e}); delete the damaged runs/*.json and run the study again "
                          "(finished runs are kept)") from None
    ungated, summary = summary.verdict, gated(experiment, summary, runs, meta["scale"])
    write_text_atomic(folder / "report.md", render_markdown(experiment, meta, summary, runs))
    results = {"experiment": experiment.name, "claim": experiment.claim, "paper": experiment.paper,
               "meta": meta, "columns": summary.columns, "rows": summary.rows, "verdict": summary.verdict,
               "results": summary.results, **({"ungated_verdict": ungated} if ungated != summary.verdict else {}),
               "runs": {arm: [{k: r[k] for k in ("seed", "seconds", "metrics") if k in r} for r in found]
                        for arm, found in runs.items()}}
    write_text_atomic(folder / "results.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    for spec in summary.plots:
        try:
            draw(spec, runs, folder / spec.file)
        except PlmlabError as e:  # matplotlib missing: the table and verdict still stand
            warn(f"warning: {folder / spec.file} not drawn ({e})")
    return folder / "report.md"


def gate_losses(runs: dict[str, list[dict]]) -> dict[str, tuple[float, float]]:
    """arm -> (mean val_loss, mean unigram_loss) over its runs that record both, val_loss finite
    (a diverged run is the study's own outcome, not a plateau); arms without such runs left out."""
    out = {}
    for arm, found in runs.items():
        pairs = [(float(r["metrics"]["val_loss"]), float(r["metrics"]["unigram_loss"])) for r in found
                 if isinstance(r["metrics"].get("val_loss"), (int, float))
                 and isinstance(r["metrics"].get("unigram_loss"), (int, float))
                 and math.isfinite(r["metrics"]["val_loss"])]
        if pairs:
            out[arm] = (stats.mean([v for v, _ in pairs]), stats.mean([u for _, u in pairs]))
    return out


def gated(experiment: Experiment, summary: Summary, runs: dict[str, list[dict]], scale: str) -> Summary:
    """`summary`, its verdict replaced by "not tested at this scale" where no arm's model ended
    GATE_MARGIN nats below the unigram baseline of its tokenizer (the table is kept)."""
    losses = gate_losses(runs) if experiment.loss_gate else {}
    if not losses or any(unigram - val >= GATE_MARGIN for val, unigram in losses.values()):
        return summary
    ended, baseline = _span([v for v, _ in losses.values()]), _span([u for _, u in losses.values()])
    where = (f"`plmlab experiment run {experiment.name} --scale large` is the run that would test it" if scale != "large"
             else "a longer run or a larger model than `--scale large` would be needed to test it")
    return replace(summary, verdict=(
        f"not tested at this scale: the models ended at {ended} nats, the unigram baseline of their tokenizer is "
        f"{baseline} nats; they learned little beyond token frequencies (no arm ended {GATE_MARGIN} nats below it), "
        f"so a difference of the size the paper reports cannot show here; {where}."))


def _span(xs: list[float]) -> str:
    low, high = f"{min(xs):.2f}", f"{max(xs):.2f}"
    return low if low == high else f"{low}–{high}"


def markdown_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in rows])


def render_markdown(experiment: Experiment, meta: dict, summary: Summary, runs: dict[str, list[dict]]) -> str:
    seeds = int(meta["seeds"])
    compute = sum(r.get("seconds", 0.0) for found in runs.values() for r in found)
    corpus = meta.get("corpus", {})
    manifest = corpus.get("manifest")
    trained_on = corpus.get("id", experiment.corpus_for(meta["scale"]))
    if manifest:
        trained_on += f" ({manifest['documents']} documents, {manifest['chars']:,} characters from " \
                      f"{len(manifest['packages'])} packages; manifest in results.json)"
    parts = [
        f"## {experiment.name}",
        f"**Claim.** {experiment.claim}",
        f"**What the paper reported.** {experiment.paper}",
        f"**What we measured** (scale `{meta['scale']}`, {seeds} seed{'s' if seeds > 1 else ''}; "
        f"mean ± 95 % t-interval over seeds where there are several):",
        markdown_table(summary.columns, summary.rows),
        f"**Verdict.** {summary.verdict}",
        *[f"![{spec.title}]({spec.file})" for spec in summary.plots],
        f"Command: `plmlab experiment run {experiment.name} --scale {meta['scale']} --seeds {seeds} "
        f"--out {meta.get('out', 'OUT')}`; wall time {meta.get('wall_s', 0.0):.0f} s "
        f"({compute:.0f} s in the runs). plmlab {meta.get('plmlab')} (commit {meta.get('git_commit') or 'unknown'}), "
        f"torch {meta.get('torch')}, Python {meta.get('python')}; trained on {trained_on}.",
    ]
    return "\n\n".join(parts) + "\n"


def draw(spec: PlotSpec, runs: dict[str, list[dict]], target: Path) -> Path:
    fig, axes, colors = panel_grid(1, 1, 6.0, 3.8, len(runs))
    ax = axes[0]
    if spec.kind == "curve":
        for color, (arm, found) in zip(colors, runs.items()):
            xs, ys = mean_curve([r["curves"][spec.metric] for r in found if spec.metric in r.get("curves", {})])
            ax.plot(xs, ys, color=color, lw=1.5, label=arm)
        ax.legend(fontsize=8)
    elif spec.kind == "bar":
        names = list(runs)
        cis = [stats.mean_ci([r["metrics"][spec.metric] for r in runs[n]]) for n in names]
        ax.bar(range(len(names)), [m for m, _ in cis], yerr=[h or 0.0 for _, h in cis], color=colors, capsize=4)
        ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    else:
        raise ValueError(f"unknown plot kind {spec.kind!r}")
    ax.set_title(spec.title, fontsize=10)
    ax.set_xlabel(spec.xlabel if spec.kind == "curve" else "")
    ax.set_ylabel(spec.ylabel or spec.metric)
    ax.grid(True, alpha=0.3)
    return save_figure(fig, target)


def mean_curve(curves: list[list[list[float]]]) -> tuple[list[float], list[float]]:
    """The point-by-point mean over seeds of [[x, y], ...] curves (cut to the shortest)."""
    n = min(len(c) for c in curves)
    xs = [curves[0][i][0] for i in range(n)]
    ys = [stats.mean([c[i][1] for c in curves]) for i in range(n)]
    return xs, ys


INDEX_INTRO = """# Experiments: the notes' claims, tested

Each section below is the `report.md` of one study, produced by

    plmlab experiment run all --scale default --out docs/experiments
    plmlab experiment report docs/experiments --index docs/experiments.md

(the second command rebuilds every report from the saved runs and assembles this page). A
study trains small models through the same Trainer as `plmlab pretrain`, over several seeds,
and states what the paper reported beside what we measured, whatever the outcome. Intervals
are 95 % t-intervals over seeds; "within noise" means Welch's t-test gives p >= 0.05.
`plmlab experiment list` names them all; `--scale smoke` runs each in seconds, `--scale large`
is sized for a GPU.
"""


def write_index(folders: list[Path], index: str | Path, note: str = "") -> Path:
    """One page of all reports: INDEX_INTRO, `note`, then each report with image links
    relative to the page."""
    index = Path(index)
    parts = [INDEX_INTRO + (f"\n{note}\n" if note else "")]
    for folder in folders:
        text = (Path(folder) / "report.md").read_text(encoding="utf-8")
        rel = Path(os.path.relpath(folder, index.parent or Path("."))).as_posix()
        for line in text.splitlines():
            if line.startswith("![") and "](" in line:
                text = text.replace(line, line.replace("](", f"]({rel}/", 1))
        parts.append(text)
    index.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(index, "\n".join(parts))
    return index
