"""`plmlab distill --teacher DIR [--student half|PRESET|DIR] --out OUT`: knowledge distillation
with DistilBERT's triple loss (plmlab.finetune.distill), a task of the one Trainer."""

from __future__ import annotations

from .args import non_negative_float, positive_float, positive_int
from .finetune import add_run_arguments, add_schedule_arguments, run_training


def register(sub) -> None:
    from ..finetune.distill import RUN_DEFAULTS

    p = sub.add_parser("distill", help="distil a teacher (MLM encoder or causal decoder) into a smaller student")
    p.add_argument("--teacher", required=True, help="teacher checkpoint or run directory (with its tokenizer)")
    p.add_argument("--student", default="half",
                   help="half (the teacher's shape with half its layers, DistilBERT's recipe), a preset of the "
                        "teacher's width (distilbert-mini for a bert-mini teacher) or a checkpoint directory")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, checkpoints/, final/, summary.json)")
    p.add_argument("--corpus", nargs="+", action="extend", metavar="PATH",
                   help="text / markdown / jsonl files or folders (default: the built-in corpus)")
    p.add_argument("--init", choices=("teacher", "random"), default="teacher",
                   help="a preset student: from every other teacher layer and its embeddings (default) or random")
    p.add_argument("--temperature", type=positive_float, default=2.0, help="softmax temperature T of the soft targets")
    p.add_argument("--alpha-ce", type=non_negative_float, default=5.0, help="weight of the soft-target loss")
    p.add_argument("--alpha-mlm", "--alpha-clm", dest="alpha_lm", type=non_negative_float, default=2.0,
                   help="weight of the student's own MLM (encoder) or CLM (decoder) loss")
    p.add_argument("--alpha-cos", type=non_negative_float,
                   help="weight of the hidden-state cosine loss (default: 1 when the widths agree, else 0)")
    p.add_argument("--seq-len", type=positive_int, help="tokens per sequence (default: 128, within both contexts)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the teacher's)")
    add_schedule_arguments(p, RUN_DEFAULTS, "sequences per step",
                           {"epochs": (int, "passes over the corpus (default 1)")})
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..finetune.distill import distill, distill_options
    from ..train.lora import FLAGS, lora_options

    options = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "json", *FLAGS)}
    return run_training(args, lambda log: distill(distill_options(**options, lora=lora_options(args)), log=log))
