"""Multiple choice by log-likelihood, zero- or few-shot, for every family.

Each item is `{"context": str, "choices": [str, ...], "label": int}`. The scored continuation of
choice c is `" " + c` after the prompt (lm-eval's default target delimiter); a K-shot prompt is K
demonstrations `context + " " + answer` and the query's context, joined with "\n\n" (lm-eval's
fewshot delimiter). The metrics are lm-evaluation-harness's (lm_eval/api/task.py,
`process_results` of multiple_choice):

    accuracy        acc:       argmax of the log-likelihoods is the label
    accuracy_norm   acc_norm:  argmax of log-likelihood / len(choice) (characters of the choice)
    accuracy_bytes  acc_bytes: argmax of log-likelihood / UTF-8 bytes of the choice

(ties go to the first choice, as numpy's argmax breaks them).
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import PlmlabError
from .choice_items import read_choice_items, read_jsonl
from .result import EvalResult
from .scoring import loglikelihoods

TARGET_DELIMITER = " "
FEWSHOT_DELIMITER = "\n\n"

__all__ = ["read_choice_items", "read_jsonl", "fewshot_prompts", "evaluate_choice", "choice_metrics"]


def fewshot_prompts(items: list[dict], shots: int = 0, demos: list[dict] | None = None, seed: int = 0) -> list[str]:
    """Each item's prompt: K demonstrations drawn without replacement from `demos` (or, without
    demos, from the other items, never the query itself), seeded by (seed, item index)."""
    if shots < 0:
        raise PlmlabError(f"shots must be >= 0, got {shots}")
    if shots == 0:
        return [item["context"] for item in items]
    pool = demos if demos else items
    available = len(pool) - (0 if demos else 1)
    if shots > available:
        raise PlmlabError(f"{shots} shots need {shots} demonstrations but only {available} are available"
                          + ("" if demos else " (the other items); give more with --demos FILE"))
    prompts = []
    for i, item in enumerate(items):
        candidates = np.arange(len(pool)) if demos else np.delete(np.arange(len(pool)), i)
        picked = np.random.default_rng([seed, i]).choice(candidates, size=shots, replace=False)
        shown = [pool[j]["context"] + TARGET_DELIMITER + pool[j]["choices"][pool[j]["label"]] for j in picked]
        prompts.append(FEWSHOT_DELIMITER.join(shown + [item["context"]]))
    return prompts


def choice_metrics(items: list[dict], lls: list[list[float]]) -> tuple[dict, list[dict]]:
    """lm-eval's acc / acc_norm / acc_bytes over the items, and one record per item."""
    records = []
    for i, (item, ll) in enumerate(zip(items, lls)):
        ll = np.asarray(ll, dtype=np.float64)
        chars = np.array([float(len(c)) for c in item["choices"]])
        nbytes = np.array([float(len(c.encode("utf-8"))) for c in item["choices"]])
        pred, pred_norm, pred_bytes = int(np.argmax(ll)), int(np.argmax(ll / chars)), int(np.argmax(ll / nbytes))
        records.append({"index": i, "label": item["label"], "pred": pred, "pred_norm": pred_norm,
                        "correct": pred == item["label"], "correct_norm": pred_norm == item["label"],
                        "correct_bytes": pred_bytes == item["label"], "loglikelihoods": ll.tolist()})
    n = len(records)
    metrics = {"accuracy": sum(r["correct"] for r in records) / n,
               "accuracy_norm": sum(r["correct_norm"] for r in records) / n,
               "accuracy_bytes": sum(r["correct_bytes"] for r in records) / n, "n": n}
    for r in records:
        del r["correct_bytes"]
    return metrics, records


def evaluate_choice(model, tokenizer, items: list[dict], shots: int = 0, demos: list[dict] | None = None,
                    seed: int = 0, batch_size: int = 16) -> EvalResult:
    """Score every choice of every item (see the module docstring); metrics accuracy,
    accuracy_norm, accuracy_bytes, n, shots, items_per_s."""
    if not items:
        raise PlmlabError("no multiple-choice items to evaluate")
    prompts = fewshot_prompts(items, shots, demos, seed)
    pairs = [(p, TARGET_DELIMITER + c) for p, item in zip(prompts, items) for c in item["choices"]]
    start = time.perf_counter()
    flat = loglikelihoods(model, tokenizer, pairs, batch_size)
    seconds = time.perf_counter() - start
    lls, at = [], 0
    for item in items:
        lls.append([ll for ll, _ in flat[at:at + len(item["choices"])]])
        at += len(item["choices"])
    metrics, records = choice_metrics(items, lls)
    metrics.update(shots=shots, seconds=round(seconds, 4), items_per_s=len(items) / max(seconds, 1e-9))
    return EvalResult("choice", metrics, records)
