"""`plmlab dpo --model SFT_DIR --data prefs.jsonl --out OUT [--beta 0.1]`: preference tuning
with DPO (plmlab.finetune.dpo), a task of the one Trainer."""

from __future__ import annotations

import json

from .args import device, non_negative_float, non_negative_int, positive_float, positive_int, probability, seed


def register(sub) -> None:
    from ..finetune.dpo import DEFAULTS

    p = sub.add_parser("dpo", help="preference-tune a decoder with DPO (prompt, chosen, rejected)")
    p.add_argument("--model", required=True, help="starting checkpoint (an SFT model), also the frozen reference")
    p.add_argument("--data", required=True, help='JSONL lines {"prompt", "chosen", "rejected"}')
    p.add_argument("--eval", help="held-out preference pairs, scored after every epoch")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, checkpoints/, final/, summary.json)")
    p.add_argument("--beta", type=positive_float, default=0.1, help="DPO's beta: how far from the reference")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that holds a run")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"], help="pairs per step")
    p.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"])
    p.add_argument("--weight-decay", type=non_negative_float, default=DEFAULTS["weight_decay"])
    p.add_argument("--warmup", type=probability, default=0.1, help="warm-up fraction of the steps")
    p.add_argument("--max-length", type=positive_int, help="maximum prompt + response tokens (default: the context)")
    p.add_argument("--truncate", action="store_true", help="cut over-long responses instead of failing")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", type=device, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "bf16-mixed", "fp16-mixed"),
                   help="default auto: bf16-mixed on CUDA, fp32 on CPU")
    p.add_argument("--clip", type=non_negative_float, default=1.0, help="max gradient norm, 0 for none")
    p.add_argument("--save-every", type=non_negative_int, help="steps between checkpoints (default: every epoch)")
    p.add_argument("--keep-last", type=non_negative_int, default=1, help="checkpoints kept, 0 for all")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "plain", "none"), help="progress display")
    p.add_argument("--json", action="store_true", help="print the per-epoch metrics as JSON lines")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..finetune.dpo import dpo, dpo_options
    from ..finetune.run import Interrupted

    known = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "json", "model", "data", "out", "beta")}
    log = (lambda line: None) if args.json else print
    try:
        history = dpo(dpo_options(args.model, args.data, args.out, args.beta, **known), log=log)
    except Interrupted as e:  # Ctrl-C: saved, resumable; not an error in the input
        print(f"plmlab: {e}", file=sys.stderr)
        return 128 + e.signum
    if args.json:
        for record in history:
            print(json.dumps(record))
    return 0
