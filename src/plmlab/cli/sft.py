"""`plmlab sft --model DIR [--data chat.jsonl] --out OUT`: supervised instruction tuning
(plmlab.finetune.sft). Without --data, the built-in instruction set (plmlab.data.instructions)."""

from __future__ import annotations

import json

from .args import device, non_negative_float, non_negative_int, positive_float, positive_int, probability, seed


def register(sub) -> None:
    p = sub.add_parser("sft", help="instruction-tune a decoder or T5 on conversations (chat template, prompt-masked)")
    p.add_argument("--model", required=True, help="pretrained checkpoint or run directory (GPT, LLaMA, GLM-4, T5)")
    p.add_argument("--data", help='JSONL: {"messages": [{"role", "content"}, ...]} or {"prompt", "response"} '
                                  "(default: the built-in instruction set)")
    p.add_argument("--eval", help="evaluation conversations, scored every epoch (default with the built-in set: "
                                  "its eval split)")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, checkpoints/, final/, summary.json)")
    p.add_argument("--chat-template", metavar="FILE", help="Jinja chat template (or a tokenizer_config.json) to use "
                                                           "instead of the tokenizer's / the family's default")
    p.add_argument("--seq-len", type=positive_int, help="tokens per packed row (default: the model's context)")
    p.add_argument("--train-on-prompt", action="store_true", help="put the loss on every token, not only the answers")
    p.add_argument("--truncate", action="store_true", help="cut conversations longer than --seq-len instead of failing")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in OUT")
    p.add_argument("--overwrite", action="store_true", help="start over in an OUT that holds a run")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--epochs", type=positive_int, default=3)
    p.add_argument("--batch-size", type=positive_int, default=16, help="conversations per step (packed into rows)")
    p.add_argument("--lr", type=positive_float, default=1e-4)
    p.add_argument("--weight-decay", type=non_negative_float, default=0.0)
    p.add_argument("--warmup", type=probability, default=0.05, help="warm-up fraction of the steps")
    p.add_argument("--seed", type=seed, default=0)
    p.add_argument("--device", type=device, help="cpu, cuda, ... (default: cuda when available)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "bf16-mixed", "fp16-mixed"))
    p.add_argument("--clip", type=non_negative_float, default=1.0, help="max gradient norm, 0 for none")
    p.add_argument("--save-every", type=non_negative_int, help="steps between checkpoints (default: every epoch)")
    p.add_argument("--keep-last", type=non_negative_int, default=1, help="checkpoints kept, 0 for all")
    p.add_argument("--threads", type=positive_int, help="CPU threads for torch")
    p.add_argument("--progress", default="auto", choices=("auto", "bar", "plain", "none"), help="progress display")
    p.add_argument("--json", action="store_true", help="print the per-epoch metrics as JSON lines")
    p.set_defaults(func=run)


def run(args) -> int:
    import sys

    from ..finetune.run import Interrupted
    from ..finetune.sft import sft, sft_options

    options = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "json")}
    log = (lambda line: None) if args.json else print
    try:
        history = sft(sft_options(**options), log=log)
    except Interrupted as e:  # Ctrl-C: saved, resumable
        print(f"plmlab: {e}", file=sys.stderr)
        return 128 + e.signum
    if args.json:
        for record in history:
            print(json.dumps(record))
    return 0
