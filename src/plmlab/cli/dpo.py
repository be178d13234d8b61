"""`plmlab dpo --model SFT_DIR [--data prefs.jsonl] --out OUT [--beta 0.1]`: preference tuning
with DPO (plmlab.finetune.dpo), a task of the one Trainer. Without --data, the built-in
preference pairs (plmlab.data.instructions)."""

from __future__ import annotations

from .args import positive_float, positive_int
from .finetune import add_run_arguments, add_schedule_arguments, fill_steps, run_training


def register(sub) -> None:
    from ..finetune.dpo import DEFAULTS

    p = sub.add_parser("dpo", help="preference-tune a decoder with DPO (prompt, chosen, rejected)")
    p.add_argument("--model", required=True, help="starting checkpoint (an SFT model), also the frozen reference")
    p.add_argument("--data", help='JSONL lines {"prompt", "chosen", "rejected"} (strings, or TRL\'s '
                                  "conversational message lists) (default: the built-in preference pairs)")
    p.add_argument("--eval", help="held-out preference pairs, scored after every epoch (default with the "
                                  "built-in pairs: their eval split)")
    p.add_argument("--out", required=True, help="run directory (metrics.jsonl, checkpoints/, final/, summary.json)")
    p.add_argument("--beta", type=positive_float, default=0.1, help="DPO's beta: how far from the reference")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    add_schedule_arguments(p, DEFAULTS, "pairs per step")
    p.add_argument("--max-length", type=positive_int, help="maximum prompt + response tokens (default: the context)")
    p.add_argument("--truncate", action="store_true", help="cut over-long responses instead of failing")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..finetune.dpo import dpo, dpo_options
    from ..train.lora import FLAGS, lora_options

    skip = {"func", "verb", "json", "model", "data", "out", "beta", *FLAGS}
    known = {k: v for k, v in vars(args).items() if k not in skip}
    options = dpo_options(args.model, args.data, args.out, args.beta, lora=lora_options(args), **known)
    return run_training(args, lambda log: dpo(options, log=log), lambda: next_steps(args.out))


def next_steps(out: str) -> list[str]:
    """Talk to the model where its tokenizer has a chat template, else continue a prompt."""
    from ..tokenizers import load_tokenizer
    from ..tokenizers.chat import chat_usable

    chat = chat_usable(load_tokenizer(f"{out}/final"))
    return fill_steps(["plmlab chat --model {out}" if chat else 'plmlab generate --model {out} "a prompt"'],
                      {"out": out})
