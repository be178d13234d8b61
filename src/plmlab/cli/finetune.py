"""`plmlab finetune --model DIR --task TASK --train FILE [--eval FILE] --out DIR`.

Tasks come from `plmlab.finetune.tasks` (classification, token-classification, and whatever
other families register); each may add its own options through `Task.add_arguments`.
"""

from __future__ import annotations

import json

from ..train.options import PRECISIONS, PROGRESS, STRATEGIES
from .args import RUN_FLAGS, add_run_flags, device, non_negative_float, non_negative_int, positive_int, seed


def register(sub) -> None:
    from ..finetune import TASKS, task_names

    names = task_names()
    p = sub.add_parser("finetune", help="fine-tune a pretrained model on a task")
    p.add_argument("--model", required=True, help="pretrained checkpoint directory (plmlab or Hugging Face)")
    p.add_argument("--task", required=True, choices=names,
                   help="; ".join(f"{n}: {TASKS[n].help}" for n in names))
    p.add_argument("--train", required=True, help="training data (CSV or JSONL)")
    p.add_argument("--eval", help="evaluation data, scored after every epoch")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, checkpoints/, final/, summary.json)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    add_schedule_arguments(p)
    p.add_argument("--max-length", type=positive_int, help="maximum tokens per input (default: the model's context)")
    p.add_argument("--truncate", action="store_true", help="cut over-long inputs instead of failing")
    p.add_argument("--labels", help="comma-separated label names in id order (default: sorted training labels)")
    add_run_arguments(p)
    for name in names:
        TASKS[name].add_arguments(p)
    p.set_defaults(func=run)


def add_schedule_arguments(p, recipe: dict | None = None, batch_help: str = "examples per step",
                           helps: dict | None = None) -> None:
    """--batch-size and the run flags every training verb shares (cli/args.py's RUN_FLAGS: --epochs,
    --max-steps, --lr, --optimizer, --schedule, --beta1/2, --warmup ...) with FinetuneOptions' defaults,
    or the recipe's own where it has them (sft.DEFAULTS, dpo.DEFAULTS, distill.RUN_DEFAULTS): each
    default is written once."""
    from ..finetune import FinetuneOptions
    from ..finetune.options import LORA_SCALE, MAX_EPOCHS, MIN_STEPS, REFERENCE_WIDTH

    d = {**{name: f.default for name, f in FinetuneOptions.__dataclass_fields__.items()}, **(recipe or {})}
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"], help=batch_help)
    base = f"{d['base_lr']:g}" if d["base_lr"] is not None else _task_base_lrs()
    derived = {  # defaults the run derives (None here): said in the help, printed by the run
        "epochs": (int, f"passes over the data (default: {d['min_epochs']}, or more for a small data set: at least "
                        f"{MIN_STEPS} steps within {MAX_EPOCHS} epochs; the run prints it)"),
        "max_steps": (int, "train this many optimizer steps instead of --epochs (evaluated every epoch and at the "
                           "end)"),
        "lr": (float, f"peak learning rate (default: {base} x {REFERENCE_WIDTH} / the model's width, {LORA_SCALE:g}x "
                      "that under LoRA; the run prints it)")}
    derived = {name: text for name, text in derived.items() if d[name] is None}
    add_run_flags(p, {name: d[name] for name in RUN_FLAGS}, {**derived, **(helps or {})})


def _task_base_lrs() -> str:
    """'1e-4 (text2text: 3e-4)': the rate at width 768, and the tasks that have their own."""
    from ..finetune import TASKS, task_names
    from ..finetune.options import DEFAULT_BASE_LR

    own = ", ".join(f"{n}: {TASKS[n].base_lr:g}" for n in task_names() if TASKS[n].base_lr != DEFAULT_BASE_LR)
    return f"{DEFAULT_BASE_LR:g}" + (f" ({own})" if own else "")


def add_run_arguments(p) -> None:
    """The options of every fine-tuning run of the one Trainer (finetune, dpo, ...): the run
    directory, reproducibility, precision, checkpoints, display, and LoRA."""
    from ..train.lora import add_lora_arguments

    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that holds a run")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", type=device, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="default auto: bf16-mixed on CUDA, fp32 on CPU")
    p.add_argument("--grad-accum", type=positive_int, default=1,
                   help="micro-batches per optimizer step (a step: batch-size x grad-accum x ranks examples)")
    p.add_argument("--strategy", default="ddp", choices=STRATEGIES,
                   help="under torchrun: ddp (default) or fsdp (FSDP2 fully_shard)")
    p.add_argument("--clip", type=non_negative_float, default=1.0, help="max gradient norm, 0 for none")
    p.add_argument("--save-every", type=non_negative_int, help="steps between checkpoints (default: every epoch)")
    p.add_argument("--keep-last", type=non_negative_int, default=1, help="checkpoints kept, 0 for all")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--progress", default="auto", choices=PROGRESS, help="progress display")
    p.add_argument("--json", action="store_true", help="print the per-epoch metrics as JSON lines")
    add_lora_arguments(p)


def run(args) -> int:
    from ..finetune import TASKS, FinetuneOptions, finetune
    from ..train.lora import FLAGS, lora_options

    fields = set(FinetuneOptions.__dataclass_fields__) - {"extra", "lora"}
    known = {k: v for k, v in vars(args).items() if k in fields}
    extra = {k: v for k, v in vars(args).items() if k not in fields and k not in ("func", "verb", "json", *FLAGS)}
    return run_training(args, lambda log: finetune(FinetuneOptions(**known, lora=lora_options(args), extra=extra),
                                                   log=log),
                        lambda: fill_steps(TASKS[args.task].next_steps, vars(args)))


def run_training(args, train, next_steps=None) -> int:
    """Run `train(log) -> history` for a fine-tuning verb: the per-epoch lines, then what to try
    next (`next_steps() -> commands`, one "next:" line each); with --json, the history as JSON
    lines at the end and nothing else. A signal saves a checkpoint and exits 128 + signum
    (resumable, not an input error)."""
    import sys

    from ..finetune.run import Interrupted

    try:
        history = train((lambda line: None) if args.json else print)
    except Interrupted as e:
        print(f"plmlab: {e}", file=sys.stderr)
        return 128 + e.signum
    if args.json:
        for record in history:
            print(json.dumps(record))
    elif next_steps is not None and history:  # rank 0 (the others get no history under torchrun)
        for command in next_steps():
            print(f"next: {command}")
    return 0


PATHS = ("out", "eval", "train", "model", "dpo")  # the values a command names as paths: quoted for the shell


def fill_steps(templates, values: dict) -> list[str]:
    """Each command template filled with the run's values ({out}, {eval}, ...); one that names a
    value the run left out (None) is skipped."""
    import shlex
    import string

    out = []
    for template in templates:
        names = [name for _, name, _, _ in string.Formatter().parse(template) if name]
        if all(values.get(name) is not None for name in names):
            out.append(template.format(**{n: shlex.quote(str(values[n])) if n in PATHS else values[n] for n in names}))
    return out
