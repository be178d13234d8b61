"""Tune the default pretraining recipe on tokens: a small sweep of arms at fixed step counts.

    PYTHONPATH=src python bench/tune_recipe.py [--presets gpt-mini llama-mini] [--steps 150]
        [--arms default muon_lr=0.01 ...] [--seeds 0] [--jobs 2] [--out bench/results/tune_recipe]

Every arm is `plmlab pretrain` with no flags but the arm's own (`PretrainOptions`' DEFAULTS
otherwise: batch 16 x 128, the built-in corpus), at a fixed step count, so arms see the same
tokens and the comparison is the final validation loss, which the machine's load does not
move (unlike seconds). Each run is one process at one thread; `--jobs` run at once. A run's
JSON (arm, options, evaluations, final val loss) is written to `out/<preset>-<steps>-<arm>-s<seed>.json`
and a run whose JSON exists is not run again, so the sweep grows by calls: one seed for all
arms first, then more seeds for the ones worth keeping.

The table (`--table`, or after a sweep) gives each arm's mean final val loss over its seeds and
its difference to the default's mean; the noise yardstick is the spread (max - min) of the
seeds of the same arm, and a difference smaller than the larger of the two arms' spreads
(or, with one seed, than the default's spread) is marked as within noise.
Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

# name -> the options it changes; "default" changes none. Warmup applies to both optimizers'
# groups (one schedule drives Muon and AdamW, optim.set_lr).
ARMS: dict[str, dict] = {
    "default": {},
    "muon_lr=0.01": {"muon_lr": 0.01},
    "muon_lr=0.04": {"muon_lr": 0.04},
    "wsd-linear": {"schedule": "wsd", "decay_fraction": 0.2, "decay_shape": "linear"},
    "wsd-1sqrt": {"schedule": "wsd", "decay_fraction": 0.2, "decay_shape": "1-sqrt"},
    "warmup=0": {"warmup": 0},
    "lr=4e-3": {"lr": 4e-3},
    "lr=1e-3": {"lr": 1e-3},
}


def run_path(out: Path, preset: str, steps: int, arm: str, seed: int) -> Path:
    return out / f"{preset}-{steps}-{arm}-s{seed}.json"


def run_arm(preset: str, steps: int, arm: str, seed: int, evals: int, out: str, scratch: str) -> dict:
    """One run in this (worker) process at one thread; its record, also written as JSON."""
    os.environ["OMP_NUM_THREADS"] = "1"
    from plmlab.plotting import read_metrics
    from plmlab.train import PretrainOptions, pretrain

    run_dir = Path(scratch) / f"{preset}-{steps}-{arm}-s{seed}"  # checkpoints: not kept
    result = pretrain(PretrainOptions(
        out=str(run_dir), preset=preset, max_steps=steps, seed=seed, threads=1, eval_every=max(1, steps // evals),
        progress="none", sample_tokens=0, save_every=0, keep_last=1, overwrite=True, **ARMS[arm]))
    records = read_metrics(run_dir)
    evals_ = [{k: r[k] for k in ("step", "tokens", "val_loss")} for r in records if "val_loss" in r]
    record = {"preset": preset, "steps": steps, "arm": arm, "seed": seed, "options": ARMS[arm],
              "final_val_loss": evals_[-1]["val_loss"], "final_train_loss": result.train_loss,
              "tokens": evals_[-1]["tokens"], "evals": evals_, "wall_s": result.wall_s}
    run_path(Path(out), preset, steps, arm, seed).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return record


def load_records(out: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("*.json"))]


def summarise(records: list[dict]) -> list[dict]:
    """One row per (preset, steps, arm): mean, spread and n over seeds, and delta to default."""
    groups: dict[tuple, list[float]] = {}
    for r in records:
        groups.setdefault((r["preset"], r["steps"], r["arm"]), []).append(r["final_val_loss"])
    rows = []
    for (preset, steps, arm), losses in sorted(groups.items()):
        rows.append({"preset": preset, "steps": steps, "arm": arm, "n": len(losses),
                     "mean": statistics.fmean(losses), "spread": max(losses) - min(losses)})
    by_key = {(r["preset"], r["steps"], r["arm"]): r for r in rows}
    for r in rows:
        base = by_key.get((r["preset"], r["steps"], "default"))
        if base is None:
            r["delta"], r["noise"] = None, None
            continue
        r["delta"] = r["mean"] - base["mean"]
        # The yardstick: how far seeds of one arm land apart (the default's if this arm has one seed).
        r["noise"] = max(base["spread"], r["spread"]) if base["n"] > 1 else None
    return rows


def verdict(row: dict) -> str:
    if row["arm"] == "default" or row["delta"] is None:
        return ""
    if row["noise"] is None:
        return "one seed of default: noise unknown"
    if abs(row["delta"]) <= row["noise"]:
        return "within seed noise"
    return "better" if row["delta"] < 0 else "worse"


def table(rows: list[dict]) -> str:
    lines = ["| preset | steps | arm | seeds | final val loss (mean) | seed spread | vs default | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        delta = "" if r["delta"] is None or r["arm"] == "default" else f"{r['delta']:+.4f}"
        spread = f"{r['spread']:.4f}" if r["n"] > 1 else "-"
        lines.append(f"| {r['preset']} | {r['steps']} | {r['arm']} | {r['n']} | {r['mean']:.4f} | {spread} | "
                     f"{delta} | {verdict(r)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["gpt-mini", "llama-mini"])
    parser.add_argument("--steps", nargs="+", type=int, default=[150])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--evals", type=int, default=3, help="validation evaluations per run (the last one counts)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    parser.add_argument("--out", default="bench/results/tune_recipe")
    parser.add_argument("--scratch", default="/tmp/plmlab-tune-recipe", help="the runs' directories")
    parser.add_argument("--table", action="store_true", help="only print the table of the saved runs")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        todo = [(p, s, a, seed) for s in args.steps for seed in args.seeds for a in args.arms for p in args.presets
                if not run_path(out, p, s, a, seed).exists()]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_arm, p, s, a, seed, args.evals, str(out), args.scratch) for p, s, a, seed in todo]
            for f in futures:
                r = f.result()
                print(f"{r['preset']} {r['steps']} {r['arm']} s{r['seed']}: val {r['final_val_loss']:.4f} "
                      f"({r['wall_s']:.0f} s)", flush=True)
    print(table(summarise(load_records(out))))


if __name__ == "__main__":
    main()
