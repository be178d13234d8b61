"""`plmlab pretrain --preset NAME --out DIR [...]`: pretrain (or resume) a model; see plmlab.train.

Every Config field is also an option (`--d-model 128`, `--dropout=0.1`; or `--set key=value`),
applied over the preset and `--config FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from dataclasses import fields

from ..config import Config, parse_overrides
from ..data.languages import language_entry
from ..train.options import DEFAULTS, MAX_DEFAULT_SEQ_LEN, PRECISIONS, PROGRESS, STRATEGIES
from .args import RUN_FLAGS, add_run_flags
from .pretrain_objective import add_objective_arguments, objective_options_from_args

# Config fields that are not offered as --FIELD: their names mean something else here
# (--tokenizer DIR, --vocab-size) or they are not architecture (notes).
_NOT_FLAGS = {"tokenizer", "vocab_size", "notes"}
# Where pretraining's run flags mean more than fine-tuning's (cli/args.py's RUN_FLAGS)
PRETRAIN_HELPS = {"warmup": (int, "warmup steps (default: max_steps / 10, at most 100)"),
                  "min_lr": (float, "the schedule's final learning rate (default: lr / 10)")}


def register(sub) -> None:
    p = sub.add_parser("pretrain", help="pretrain a model on a corpus (or the built-in one)",
                       description=__doc__.replace("`", ""))
    _run_flags(p.add_argument_group("run"))
    _scale_flags(p.add_argument_group("scale (torchrun --nproc_per_node N -m plmlab pretrain ... runs DDP)"))
    _training_flags(p.add_argument_group("training"))
    # the optimizer, schedule and length: every training verb's run flags (cli/args.py), with pretraining's defaults
    add_run_flags(p.add_argument_group("optimizer, schedule and length"),
                  {name: DEFAULTS[name] for name in RUN_FLAGS if name in DEFAULTS}, PRETRAIN_HELPS, resumable=True)
    add_objective_arguments(p)
    _model_flags(p.add_argument_group("model config (over the preset)"))
    p.set_defaults(func=run_pretrain)


def _run_flags(run) -> None:
    run.add_argument("--preset", metavar="NAME", help="preset name (plmlab info --list)")
    run.add_argument("--out", required=True, metavar="DIR", help="run directory")
    run.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in DIR")
    run.add_argument("--init-from", metavar="DIR",
                     help="a new run from another run's weights, config and tokenizer (its final/ or newest "
                          "checkpoint, a checkpoint or a Hugging Face dir) with a fresh optimizer, schedule and "
                          "step count; with --resume, resume wins when DIR holds a run")
    run.add_argument("--overwrite", action="store_true", help="start over in a DIR that holds a run")
    run.add_argument("--objective", metavar="NAME", help="pretraining objective (default clm)")
    run.add_argument("--corpus", nargs="+", action="extend", metavar="PATH",
                     help="text / markdown / jsonl files or folders (default: the built-in corpus); "
                          'a jsonl record may name its language: {"text": ..., "lang": "en"} (XLM)')
    run.add_argument("--corpus-lang", action="append", default=[], metavar="NAME=PATH",
                     help="a text file or folder in language NAME (XLM's CLM / MLM; repeatable, with or "
                          "without --corpus)")
    run.add_argument("--encoding-errors", choices=("strict", "replace"), help="on invalid UTF-8 (default strict)")
    run.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: train one on the corpus)")
    run.add_argument("--vocab-size", type=int, metavar="N", help="model (and trained tokenizer) vocabulary size")
    run.add_argument("--device", metavar="DEV", help="auto | cpu | cuda | cuda:N (default auto)")
    run.add_argument("--threads", type=int, metavar="N",
                     help="CPU threads for torch (default: torch's own count, i.e. the physical cores or "
                          "OMP_NUM_THREADS, at most the CPUs this process may use and at most 8; on a machine "
                          "other programs keep busy, fewer threads run faster)")
    run.add_argument("--precision", choices=PRECISIONS,
                     help="default auto: bf16-mixed on CUDA, fp32 on CPU (bf16 = bf16-mixed; fp16-mixed: CUDA, GradScaler)")
    run.add_argument("--progress", choices=PROGRESS, help="progress display")
    run.add_argument("--json", action="store_true", help="print the result as one JSON object")
    run.add_argument("--suite", choices=("builtin",),
                     help="at the end, score the final model on the built-in multiple-choice suite "
                          "(the score card of plmlab evaluate --suite builtin)")
    run.add_argument("--tensorboard", action="store_true", default=None,
                     help="also log the metrics to DIR/tensorboard (needs the tensorboard package)")


def _scale_flags(scale) -> None:
    scale.add_argument("--strategy", choices=STRATEGIES, help="under torchrun: ddp (default) or fsdp (FSDP2 fully_shard)")
    scale.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    scale.add_argument("--activation-checkpointing", action="store_true", default=None,
                       help="recompute each block's activations in the backward pass (less memory)")
    scale.add_argument("--global-batch-tokens", type=int, metavar="N",
                       help="tokens per optimizer step over all ranks; sets --grad-accum to "
                            "N / (batch_size x seq_len x ranks)")
    scale.add_argument("--oom-backoff", action="store_true", default=None,
                       help="on CUDA out-of-memory: halve the micro-batch, double --grad-accum, retry the step")
    scale.add_argument("--peak-flops", type=float, metavar="X",
                       help="peak FLOP/s per device for the MFU estimate (default: known GPUs; none on CPU)")


def _training_flags(train) -> None:
    for name, kind, text in (
        ("batch-size", int, "sequences per micro-batch"), ("grad-accum", int, "micro-batches per step"),
        ("seq-len", int, "tokens per sequence (default: max_positions, at most "
                         f"{MAX_DEFAULT_SEQ_LEN['cpu']} on CPU, {MAX_DEFAULT_SEQ_LEN['cuda']} on GPU)"),
        ("clip", float, "max gradient norm, 0 for none"), ("seed", int, "random seed"),
        ("save-every", int, "steps between checkpoints"), ("keep-last", int, "checkpoints kept, 0 for all"),
        ("eval-every", int, "steps between evaluations"), ("eval-batches", int, "validation batches"),
        ("max-bad-steps", int, "non-finite steps in a row before stopping"),
        ("sample-tokens", int, "tokens sampled from --prompt at the end, 0 for none"), ("prompt", str, "sample prompt"),
    ):
        default = DEFAULTS[name.replace("-", "_")]
        train.add_argument(f"--{name}", type=kind, metavar={int: "N", float: "X", str: "TEXT"}[kind],
                           help=text if default is None else f"{text} (default {default!r})")


def _model_flags(model) -> None:
    model.add_argument("--config", dest="config_file", metavar="FILE", help="JSON or YAML object of Config fields")
    model.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a Config field")
    for f in fields(Config):
        if f.name not in _NOT_FLAGS:
            model.add_argument(f"--{f.name.replace('_', '-')}", dest=f"config__{f.name}", metavar="V",
                               help=argparse.SUPPRESS)


def options_from_args(args):
    from ..train import PretrainOptions

    overrides = [f"{key.removeprefix('config__')}={value}" for key, value in vars(args).items()
                 if key.startswith("config__") and value is not None]
    parsed = parse_overrides(args.set + overrides) or None
    values = {k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None}
    values["objective_options"] = objective_options_from_args(args)
    if args.corpus_lang:  # stored as corpus entries lang:NAME=PATH (data/languages.py): a resume reads them
        values["corpus"] = [*(args.corpus or []), *map(language_entry, args.corpus_lang)]
    return PretrainOptions(out=args.out, resume=args.resume, overwrite=args.overwrite, overrides=parsed,
                           **{k: v for k, v in values.items() if k != "overrides"})


def run_pretrain(args) -> int:
    from ..train import pretrain

    result = pretrain(options_from_args(args))
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 reports
        return 128 + result.interrupted if result.interrupted is not None else 0
    if args.json:
        print(json.dumps(result.to_dict()))
    if result.interrupted is not None:
        print(f"plmlab: interrupted by {signal.Signals(result.interrupted).name} after step {result.step}; "
              f"saved {result.checkpoint}; continue with --resume", file=sys.stderr)
        return 128 + result.interrupted
    if not args.json:
        print_summary(result)
        print_next_steps(result)
    return 0


def print_next_steps(r) -> None:
    """What to try next, naming this run's directory (train/next_steps.py)."""
    from ..hf import load_config
    from ..train.next_steps import next_steps

    print("\nnext:\n" + "\n".join(f"  {step}" for step in next_steps(load_config(r.final_dir), r.out)))


def print_summary(r) -> None:
    minutes, seconds = divmod(int(r.wall_s), 60)
    print(f"trained {r.params:,} parameters for {r.step} steps: {r.tokens:,} tokens, "
          f"{r.tokens_per_s:,.0f} tokens/s, {minutes}:{seconds:02d} wall")
    if r.val_loss is not None:
        print(f"validation on {r.val_tokens:,} tokens (cross-entropy, nats/token):")
        print(f"  model    loss {r.val_loss:7.4f}  ppl {r.val_ppl:10.2f}")
        for name, b in r.baselines.items():
            print(f"  {name:<8} loss {b['loss']:7.4f}  ppl {b['ppl']:10.2f}  (add-k smoothing, k={b['k']:g})")
    accuracies = getattr(r, "accuracies", None) or {}
    if accuracies:
        print("  " + "  ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in accuracies.items()))
    print(f"final model: {r.final_dir}")
    if getattr(r, "demo", None):
        from ..train.demo import demo_text

        print("\n".join(demo_text(r.demo)))
    if r.sample is not None:
        print(f"sample: {r.sample!r}")
    if r.score_card is not None:
        from ..evaluate.builtin import format_suite
        from ..evaluate.result import EvalResult

        print("\nthe built-in suite, zero-shot (plmlab evaluate --suite builtin):")
        print(format_suite(EvalResult("suite", r.score_card, [])))
