"""`run_experiment(name, scale, seeds, out)`: every arm x seed of a study, resumable, then its report.

    OUT/NAME/meta.json              versions, corpus, scale, seeds, wall time (all sessions)
    OUT/NAME/runs/ARM-sSEED.json    one finished run (written atomically: there or absent)
    OUT/NAME/report.md  results.json  *.png      rebuilt from the two above (report.py)
    OUT/NAME/cache/                 what arms share (the study's tokenizers)
    OUT/NAME/work/ARM-sSEED/        scratch space of the run in progress, removed after it

A finished run is never redone, so an interrupted `plmlab experiment run` picks up where it
stopped; a folder holding another scale's runs is refused (mixing scales would mix the table).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

import torch

from ..data.docs_corpus import docs_manifest
from ..data.files import write_text_atomic
from ..errors import PlmlabError
from ..train.rundir import RunLock
from ..train.setup import package_version
from .base import SCALES, Experiment
from .report import checked_meta, write_report
from .studies import EXPERIMENTS, get_experiment

META = "meta.json"


def check_scale(scale: str) -> None:
    if scale not in SCALES:
        raise PlmlabError(f"unknown scale {scale!r} (choose from {', '.join(SCALES)})")


def check_seeds(seeds) -> None:
    if seeds is not None and (isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1):
        raise PlmlabError(f"--seeds must be a positive integer, got {seeds!r}")


def check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PlmlabError(f"--out {out} is a file, not a folder")


def run_experiment(name: str, scale: str = "default", seeds: int | None = None, out: str | Path = "experiments",
                   log=print) -> Path:
    """Run study `name` ("all": every study in turn) into OUT/NAME; returns OUT/NAME (OUT for all)."""
    check_scale(scale)
    check_seeds(seeds)
    out = Path(out)
    check_out(out)
    if name == "all":
        for experiment in EXPERIMENTS.values():
            _run_one(experiment, scale, seeds, out, log)
        return out
    return _run_one(get_experiment(name), scale, seeds, out, log)


def _run_one(experiment: Experiment, scale: str, seeds: int | None, out: Path, log) -> Path:
    folder = out / experiment.name
    check_out(folder)
    with RunLock(folder):  # two `experiment run`s of one study would write the same runs
        return _run_locked(experiment, scale, seeds, folder, out, log)


def _run_locked(experiment: Experiment, scale: str, seeds: int | None, folder: Path, out: Path, log) -> Path:
    n_seeds = seeds or experiment.seeds[scale]
    meta = _start_meta(experiment, folder, scale, n_seeds, out)
    started = time.perf_counter()
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    for arm in experiment.arms(scale):
        for seed in range(n_seeds):
            path = folder / "runs" / f"{arm.name}-s{seed}.json"
            if path.is_file():
                continue  # finished in an earlier session
            log(f"{experiment.name}: {arm.name} seed {seed} ...")
            work = folder / "work" / path.stem
            shutil.rmtree(work, ignore_errors=True)  # a killed run's scratch
            t0 = time.perf_counter()
            record = experiment.run(arm, seed, scale, work)
            seconds = round(time.perf_counter() - t0, 2)
            full = {"experiment": experiment.name, "arm": arm.name, "params": arm.params, "seed": seed,
                    "scale": scale, "seconds": seconds, **record}
            write_text_atomic(path, json.dumps(full, indent=1, sort_keys=True) + "\n")
            shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(folder / "work", ignore_errors=True)
    meta["wall_s"] = round(meta.get("wall_s", 0.0) + time.perf_counter() - started, 1)
    write_text_atomic(folder / META, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    report = write_report(folder)
    log(f"{experiment.name}: wrote {report}")
    return folder


def _start_meta(experiment: Experiment, folder: Path, scale: str, n_seeds: int, out: Path) -> dict:
    """meta.json: a new one, or the folder's (same scale), with the seeds now asked for."""
    path = folder / META
    if path.exists():
        meta = checked_meta(path)
        if meta.get("experiment") != experiment.name or meta.get("scale") != scale:
            raise PlmlabError(f"{folder} holds a {meta.get('experiment')} run at --scale {meta.get('scale')}, "
                              f"not {experiment.name} at {scale}; use another --out")
        meta["seeds"] = max(meta["seeds"], n_seeds)
        return meta
    if folder.exists() and any(p.name != ".lock" for p in folder.iterdir()):
        raise PlmlabError(f"{folder} exists but holds no {META}: not an experiment folder; use another --out")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"experiment": experiment.name, "scale": scale, "seeds": n_seeds, "out": str(out),
            "corpus": corpus_info(experiment.corpus_for(scale)), **versions(), "wall_s": 0.0}
    write_text_atomic(path, json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return meta


def corpus_info(corpus: str) -> dict:
    """What the study trains on: the corpus id, and for builtin:docs its package manifest."""
    if corpus == "builtin:docs":
        return {"id": corpus, "manifest": docs_manifest()}
    return {"id": corpus}


def versions() -> dict:
    return {"plmlab": package_version(), "git_commit": _git_commit(), "torch": torch.__version__,
            "python": platform.python_version()}


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent,
                              capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None
