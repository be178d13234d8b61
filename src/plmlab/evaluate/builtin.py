"""The built-in suite: every built-in task (plmlab.evaluate.builtin_tasks) at every shot count,
each with its chance level and centered accuracy (acc - chance) / (1 - chance), and their mean as
one score, CORE (DCLM, Li et al. 2024, section 3.5; nanochat's base_eval): 0 is guessing, 1 is
perfect, whatever the number of choices.

    result = evaluate_suite(model, tokenizer, shots=(0, 5))
    print(format_suite(result))
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import PlmlabError
from .builtin_tasks import TASKS, build_task, chance
from .choice import evaluate_choice
from .result import EvalResult

DEFAULT_ITEMS = 300


def evaluate_suite(model, tokenizer, shots=(0,), seed: int = 0, batch_size: int = 16,
                   n_items: int = DEFAULT_ITEMS, tasks=None) -> EvalResult:
    """Score `tasks` (default: all) at each shot count; K-shot demonstrations are other items of
    the same task. metrics: {"tasks": [{task, shots, accuracy, chance, centered, n}], "core",
    "items_per_s"}; items: each row's per-item records, tagged with task and shots."""
    shots = [int(k) for k in shots]
    if not shots:
        raise PlmlabError("give at least one shot count (e.g. --shots 0)")
    rows, records, scored, start = [], [], 0, time.perf_counter()
    for name in tasks or TASKS:
        items = build_task(name, n_items, seed)
        for k in shots:
            result = evaluate_choice(model, tokenizer, items, shots=k, seed=seed, batch_size=batch_size)
            level = chance(items)
            acc = result.metrics["accuracy"]
            rows.append({"task": name, "shots": k, "accuracy": acc, "chance": level,
                         "centered": (acc - level) / (1 - level), "n": len(items)})
            records += [{"task": name, "shots": k, **r} for r in result.items]
            scored += len(items)
    seconds = time.perf_counter() - start
    metrics = {"tasks": rows, "core": float(np.mean([r["centered"] for r in rows])), "n": scored,
               "seconds": round(seconds, 4), "items_per_s": scored / max(seconds, 1e-9)}
    return EvalResult("suite", metrics, records)


def format_suite(result: EvalResult) -> str:
    """The score card: one line per (task, shots), then CORE."""
    header = f"{'task':<16}{'shots':>6}{'n':>6}{'accuracy':>10}{'chance':>8}{'centered':>10}"
    lines = [header, "-" * len(header)]
    for r in result.metrics["tasks"]:
        lines.append(f"{r['task']:<16}{r['shots']:>6}{r['n']:>6}{r['accuracy']:>10.3f}{r['chance']:>8.3f}"
                     f"{r['centered']:>10.3f}")
    lines.append("-" * len(header))
    lines.append(f"{'CORE (mean centered)':<46}{result.metrics['core']:>10.3f}"
                 f"   ({result.metrics['items_per_s']:.1f} items/s)")
    return "\n".join(lines)
