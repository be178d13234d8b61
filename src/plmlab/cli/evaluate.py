"""`plmlab evaluate`: score a model (or compare several) on a task, the built-in suite or lm-eval tasks.

    plmlab evaluate --model runs/gpt --task perplexity [--data FILE] [--stride S] [--max-length L]
    plmlab evaluate --model runs/bert --task mlm
    plmlab evaluate --model runs/gpt --task choice --data items.jsonl --shots 5 --demos demos.jsonl
    plmlab evaluate --compare runs/a runs/b --task perplexity --plot compare.png
    plmlab evaluate --model runs/gpt --task perplexity --quantize int8   # what int8 costs this model

A thin layer over plmlab.evaluate.run / compare: parse, check, call, print.
"""

from __future__ import annotations

import argparse
import json

from ..evaluate import TASKS, EvalOptions, check_out, compare, run, write_items
from ..evaluate.compare import compare_table, format_table, plot_compare
from .args import device, non_negative_int, positive_int, seed
from .generate import add_quantize_arg


def shots(text: str) -> tuple[int, ...]:
    """`0`, or a list `0,1,5`: non-negative integers."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of integers (e.g. 0,1,5)") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one number of shots")
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"the number of shots must be non-negative, got {text}")
    return values


def register(sub) -> None:
    p = sub.add_parser("evaluate", help="score a model: perplexity, mlm, span corruption, choice, suites, lm-eval")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", metavar="DIR", help="checkpoint or training run directory")
    which.add_argument("--compare", nargs="+", metavar="DIR", help="several models, one table")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--task", choices=list(TASKS), help="what to score")
    what.add_argument("--suite", choices=["builtin"], help="the built-in multiple-choice suite")
    what.add_argument("--lm-eval-tasks", metavar="NAMES", help="lm-evaluation-harness tasks, comma-separated")
    p.add_argument("--data", metavar="FILE", help="text file, folder or JSONL; perplexity / mlm / span-corruption "
                                                  "default to the built-in corpus's validation split")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--max-length", type=positive_int, metavar="L", help="window length in tokens (default: the context)")
    p.add_argument("--stride", type=int, metavar="S", help="perplexity: sliding-window stride (default: L / 2)")
    p.add_argument("--shots", type=shots, default=(0,), metavar="K[,K...]", help="few-shot demonstrations (default 0)")
    p.add_argument("--demos", metavar="FILE", help="--task choice: demonstrations (JSONL)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, metavar="N", help="--task generate (default 32)")
    p.add_argument("--include-path", metavar="DIR", help="lm-eval: a folder of task YAMLs")
    p.add_argument("--limit", type=positive_int, metavar="N", help="lm-eval: at most N items per task")
    p.add_argument("--num-fewshot", type=non_negative_int, metavar="K", help="lm-eval: demonstrations")
    p.add_argument("--batch-size", type=positive_int, default=16, metavar="B", help="rows per forward pass (default 16)")
    p.add_argument("--seed", type=seed, default=0, help="masking / demonstration draws (default 0)")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    add_quantize_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object with the metrics")
    p.add_argument("--out", metavar="FILE", help="also write per-item scores (JSON lines)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--plot", metavar="FILE.png", help="--compare: a bar plot of the metrics")
    p.set_defaults(func=run_verb)


def options(args) -> EvalOptions:
    tasks = tuple(t.strip() for t in (args.lm_eval_tasks or "").split(",") if t.strip())
    return EvalOptions(model=args.model or "", task=args.task, suite=args.suite, lm_eval_tasks=tasks, data=args.data,
                       tokenizer=args.tokenizer, device=args.device, batch_size=args.batch_size, seed=args.seed,
                       max_length=args.max_length, stride=args.stride, shots=args.shots, demos=args.demos,
                       max_new_tokens=args.max_new_tokens, include_path=args.include_path, limit=args.limit,
                       num_fewshot=args.num_fewshot, quantize=args.quantize)


def run_verb(args) -> int:
    from ..errors import PlmlabError

    if args.plot and not args.compare:
        raise PlmlabError("--plot draws a --compare of two or more models")
    check_out(args.out, args.overwrite)  # before the work, not after it
    if args.compare:
        return _compare(args)
    result = run(options(args))
    if args.out:
        write_items(args.out, result.items)
    print(json.dumps(result.to_dict(), ensure_ascii=False) if args.json else show(result))
    return 0


def _compare(args) -> int:
    results = compare(args.compare, options(args))
    names = list(results)
    columns, rows = compare_table(results)
    if args.out:
        write_items(args.out, [{"model": n, **i} for n, r in results.items() for i in r.items])
    if args.plot:
        plot_compare(names, columns, rows, args.plot)
    if args.json:
        print(json.dumps({"task": next(iter(results.values())).task,
                          "models": {n: r.metrics for n, r in results.items()}}, ensure_ascii=False))
    else:
        print(format_table(names, columns, rows))
    return 0


def show(result) -> str:
    """The metrics for a reader: the suite's table, a confusion matrix, then `name  value` lines."""
    m = dict(result.metrics)
    lines = [f"task: {result.task}"]
    if isinstance(m.get("tasks"), list):
        lines.append(_suite_table(m.pop("tasks")))
    matrix = m.pop("confusion_matrix", None)
    width = max((len(k) for k in m), default=0)
    lines += [f"{k.ljust(width)}  {v:.4f}" if isinstance(v, float) else f"{k.ljust(width)}  {v}" for k, v in m.items()]
    if matrix:
        lines.append("confusion matrix (rows: gold, columns: predicted)")
        lines.append(format_table(matrix["labels"], matrix["labels"], matrix["matrix"], first="gold"))
    return "\n".join(lines)


def _suite_table(rows: list[dict]) -> str:
    names = [f"{r['task']} {r['shots']}-shot" for r in rows]
    columns = ["accuracy", "chance", "centered", "n"]
    return format_table(names, columns, [[r.get(c) for c in columns] for r in rows], first="task")
