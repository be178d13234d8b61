"""Evaluation for every family: perplexity and bits per byte, masked-token accuracy and
pseudo-log-likelihood, span corruption, multiple choice and generation scoring (zero- and
few-shot), a built-in suite, classifier / tagger metrics, and an lm-evaluation-harness adapter
(`plmlab.lmeval`). The `plmlab evaluate` verb is a thin layer over these functions.

    from plmlab.evaluate import EvalOptions, run
    result = run(EvalOptions(model="runs/gpt", task="perplexity"))   # the built-in validation split
    result.metrics["perplexity"], result.metrics["bits_per_byte"]
"""

from .result import EvalResult
from .dispatch import TASKS, EvalOptions, check_out, check_task, compare, run, tasks_for, write_items

__all__ = ["EvalResult", "EvalOptions", "TASKS", "run", "compare", "check_task", "tasks_for", "check_out",
           "write_items"]
