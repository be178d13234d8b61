"""`plmlab sft --model DIR [--data chat.jsonl] --out OUT`: supervised instruction tuning
(plmlab.finetune.sft). Without --data, the built-in instruction set (plmlab.data.instructions)."""

from __future__ import annotations

from .args import positive_int
from .finetune import add_run_arguments, add_schedule_arguments, fill_steps, run_training


def register(sub) -> None:
    from ..finetune.sft import DEFAULTS

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
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    add_schedule_arguments(p, DEFAULTS, "conversations per step (packed into rows)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from ..finetune.sft import sft, sft_options
    from ..train.lora import FLAGS, lora_options

    options = {k: v for k, v in vars(args).items() if k not in ("func", "verb", "json", *FLAGS)}
    return run_training(args, lambda log: sft(sft_options(**options, lora=lora_options(args)), log=log),
                        lambda: next_steps(args.out))


def next_steps(out: str) -> list[str]:
    """Talk to the model; a decoder can then be preference-tuned (DPO takes decoders only)."""
    from ..hf import load_config, resolve_dir
    from ..families.fits import Fits

    steps = ["plmlab chat --model {out}"]
    if Fits(arch="decoder", head="lm").fits(load_config(resolve_dir(out))):  # what DPO trains
        steps.append("plmlab dpo --model {out} --out {dpo}")
    return fill_steps(steps, {"out": out, "dpo": f"{out.rstrip('/')}-dpo"})
