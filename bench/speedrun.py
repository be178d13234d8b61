"""Time to a target loss: nanoGPT's AdamW recipe versus plmlab's default, same wall-clock budget.

    PYTHONPATH=src python bench/speedrun.py [--budget-s 300] [--presets gpt-mini llama-mini]
                                            [--threads 2] [--evals 20] [--eval-batches 20]
                                            [--out bench/results/speedrun]

For each preset both recipes train the same model (same seed: same initial weights, the same
tokenizer and the same data order) on the built-in corpus through `plmlab.train.pretrain`:

    reference  nanoGPT's train.py defaults: AdamW lr 6e-4, betas 0.9 / 0.95, weight decay 0.1,
               warmup then cosine to lr / 10
    default    whatever `plmlab pretrain` does with no optimisation flags (PretrainOptions' DEFAULTS)

A recipe's step count is its budget over its own seconds per step (the Muon step costs more
than the AdamW one, and the schedule needs its horizon in steps), calibrated first on one
shared forward + backward and each recipe's optimizer step; `--steps N` fixes it instead. Validation loss is evaluated `--evals` times per run; the Trainer's
clock (`elapsed_s` in metrics.jsonl) counts training only, never evaluation. The target is
the reference's final validation loss; the default's time to it is interpolated between its
evaluations. Reported: times, tokens, and the ratio default / reference (the goal is <= 0.7).

The machine is shared: seconds are noisy, so the runs alternate order between presets and
the comparison on tokens (which noise does not move) is printed next to the one on seconds.
Writes speedrun.json and speedrun.png (validation loss against seconds and against tokens).
Not a test.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

import plmlab
from plmlab.plotting import panel_grid, read_metrics, save_figure
from plmlab.train import PretrainOptions, pretrain
from plmlab.train.build import build_optimizer
from plmlab.train.options import DEFAULTS

REFERENCE = {"optimizer": "adamw", "lr": 6e-4, "beta1": 0.9, "beta2": 0.95, "weight_decay": 0.1,
             "schedule": "cosine", "min_lr": 6e-5}
RECIPES = {"reference": REFERENCE, "default": {}}


def common(preset: str, threads: int, seed: int, eval_batches: int) -> dict:
    return {"preset": preset, "threads": threads, "seed": seed, "eval_batches": eval_batches, "progress": "none", "sample_tokens": 0,
            "save_every": 0, "keep_last": 1, "overwrite": True}


def seconds_per_step(preset: str, threads: int, repeats: int = 4) -> dict[str, float]:
    """Median seconds of one training step (batch 16 x 128 of random ids) per recipe: one
    forward + backward, then each recipe's optimizer step on the same gradients, so that the
    machine's load moves both alike (the first repeat left out: warm-up)."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = plmlab.build_model(preset)
    o = dataclasses.replace(PretrainOptions(out="-").resolved(), lr=1e-9, muon_lr=1e-9)  # the step's cost, not its effect
    optimizers = {name: build_optimizer(model, dataclasses.replace(o, **recipe).run_spec().optimizer)
                  for name, recipe in RECIPES.items()}
    ids = torch.randint(0, model.config.vocab_size, (DEFAULTS["batch_size"], 128))  # (B, T)
    times: dict[str, list[float]] = {"forward_backward": [], **{name: [] for name in optimizers}}
    for _ in range(repeats + 1):
        start = time.perf_counter()
        model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
        times["forward_backward"].append(time.perf_counter() - start)
        for name, optimizer in optimizers.items():
            start = time.perf_counter()
            optimizer.step()
            times[name].append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    median = {k: statistics.median(v[1:]) for k, v in times.items()}
    return {name: median["forward_backward"] + median[name] for name in optimizers}


def train(name: str, preset: str, recipe: dict, base: dict, steps: int, evals: int, out: Path) -> dict:
    """One run; its evaluations (val_loss, elapsed_s: the Trainer's training-only clock, tokens)
    and the seconds spent beside training (set-up, evaluations, the end's baselines)."""
    run_dir = out / f"{preset}-{name}"
    result = pretrain(PretrainOptions(out=str(run_dir), max_steps=steps, eval_every=max(1, steps // evals),
                                      **base, **recipe))
    records = read_metrics(run_dir)
    evals_ = [{k: r[k] for k in ("step", "tokens", "elapsed_s", "val_loss")} for r in records if "val_loss" in r]
    return {"steps": steps, "evals": evals_, "wall_s": result.wall_s,
            "outside_training_s": round(result.wall_s - records[-1]["elapsed_s"], 1)}


def time_to(evals: list[dict], target: float, x: str) -> float | None:
    """The first `x` (elapsed_s or tokens) at which validation loss reaches `target`, linearly
    interpolated between the evaluation before and the one that reached it."""
    previous = {"val_loss": float("inf"), x: 0.0}
    for e in evals:
        if e["val_loss"] <= target:
            if previous["val_loss"] == float("inf"):
                return float(e[x])
            share = (previous["val_loss"] - target) / (previous["val_loss"] - e["val_loss"])
            return float(previous[x] + share * (e[x] - previous[x]))
        previous = e
    return None


def compare(preset: str, args, out: Path, order: list[str]) -> dict:
    """Both recipes on one preset: steps from the budget (or --steps), the runs, times to target."""
    base = common(preset, args.threads, args.seed, args.eval_batches)
    per_step = seconds_per_step(preset, args.threads)
    runs = {}
    for name in order:
        steps = args.steps or max(args.evals, int(args.budget_s / per_step[name]))
        print(f"{preset} {name}: {per_step[name]:.3f} s/step -> {steps} steps", flush=True)
        runs[name] = train(name, preset, RECIPES[name], base, steps, args.evals, out)
        runs[name]["s_per_step_calibrated"] = per_step[name]
    target = runs["reference"]["evals"][-1]["val_loss"]
    for name, run in runs.items():
        run["final_val_loss"] = run["evals"][-1]["val_loss"]
        run["seconds_to_target"] = time_to(run["evals"], target, "elapsed_s")
        run["tokens_to_target"] = time_to(run["evals"], target, "tokens")
        step_tokens = run["evals"][-1]["tokens"] / run["evals"][-1]["step"]
        # The same time on an unshared clock: tokens to target x the calibrated cost of a token.
        run["calibrated_seconds_to_target"] = (None if run["tokens_to_target"] is None else
                                               run["tokens_to_target"] / step_tokens * per_step[name])
    result = {"target_val_loss": target, "runs": {name: runs[name] for name in RECIPES}}
    for key in ("seconds", "tokens", "calibrated_seconds"):
        a, b = runs["reference"][f"{key}_to_target"], runs["default"][f"{key}_to_target"]
        result[f"ratio_{key}"] = None if a is None or b is None else b / a
    return result


def plot(results: dict, target: Path) -> Path:
    fig, axes, colors = panel_grid(2 * len(results), 2, 5.0, 3.4, len(RECIPES))
    for row, (preset, result) in enumerate(results.items()):
        for col, (x, label) in enumerate((("elapsed_s", "training seconds"), ("tokens", "tokens"))):
            ax = axes[2 * row + col]
            for color, (name, run) in zip(colors, result["runs"].items()):
                evals = run["evals"]
                ax.plot([e[x] for e in evals], [e["val_loss"] for e in evals], color=color, marker=".", label=name)
            ax.axhline(result["target_val_loss"], color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{preset}: validation loss vs {label}", fontsize=9)
            ax.set_xlabel(label)
            ax.legend(fontsize=8)
    return save_figure(fig, target)


def summary_line(preset: str, r: dict) -> str:
    ref, new = r["runs"]["reference"], r["runs"]["default"]

    def shown(v, unit):
        return "never" if v is None else f"{v:,.0f}{unit}"
    ratios = ", ".join(f"{'n/a' if r[f'ratio_{k}'] is None else format(r[f'ratio_{k}'], '.2f')} in {k.replace('_', ' ')}"
                       for k in ("seconds", "calibrated_seconds", "tokens"))
    return (f"{preset}: target {r['target_val_loss']:.4f} (reference final); reference {shown(ref['seconds_to_target'], ' s')}"
            f" / {shown(ref['tokens_to_target'], ' tok')}, default {shown(new['seconds_to_target'], ' s')} / "
            f"{shown(new['tokens_to_target'], ' tok')} (final {new['final_val_loss']:.4f}); default / reference: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=300.0, help="training seconds per run")
    parser.add_argument("--presets", nargs="+", default=["gpt-mini", "llama-mini"])
    parser.add_argument("--steps", type=int, help="fix each run's steps instead (a loaded machine: compare on "
                                                   "tokens and calibrated seconds)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--evals", type=int, default=20, help="validation evaluations per run")
    # Fewer batches per evaluation: less wall time beside training on a loaded machine (the
    # validation batches stay the same for both recipes, so the target is still comparable).
    parser.add_argument("--eval-batches", type=int, default=DEFAULTS["eval_batches"])
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    parser.add_argument("--out", default="bench/results/speedrun")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for i, preset in enumerate(args.presets):  # alternate which recipe runs first
        order = ["reference", "default"] if i % 2 == 0 else ["default", "reference"]
        results[preset] = compare(preset, args, out / "runs", order)
        print(summary_line(preset, results[preset]), flush=True)
    record = {"budget_s": args.budget_s, "steps": args.steps, "threads": args.threads, "evals": args.evals,
              "eval_batches": args.eval_batches, "default_recipe": {
        k: DEFAULTS[k] for k in ("optimizer", "lr", "muon_lr", "schedule", "decay_fraction", "decay_shape",
                                 "weight_decay", "beta1", "beta2", "warmup", "min_lr", "batch_size")},
        "reference_recipe": REFERENCE, "results": results}
    (out / "speedrun.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out / 'speedrun.json'} and {plot(results, out / 'speedrun.png')}")


if __name__ == "__main__":
    main()
