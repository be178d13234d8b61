"""`plmlab classify --model RUN TEXT ...`: a fine-tuned text classifier's label for each text
(plmlab.pipelines.TextClassification). Texts come as arguments, on stdin (one per line, or `-`)
or from --file (one per line; JSONL objects with `text` and an optional `text_pair`)."""

from __future__ import annotations

import json

from ..errors import PlmlabError
from ..pipelines import TextClassification, load_model_and_tokenizer
from .args import device, read_lines, read_text_file


def add_common(p, what: str) -> None:
    """The arguments classify and tag share."""
    p.add_argument("texts", nargs="*", metavar="TEXT", help=f"{what}; '-' (or none, without --file) reads stdin")
    p.add_argument("--model", required=True, metavar="DIR", help="fine-tuned checkpoint (or its run directory)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--file", metavar="FILE", help="inputs, one per line (.jsonl: one JSON object per line)")
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    p.add_argument("--json", action="store_true", help="print one JSON object per input")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")


def register(sub) -> None:
    p = sub.add_parser("classify", help="label texts with a fine-tuned text classifier")
    add_common(p, "a text to classify")
    p.set_defaults(func=run)


def read_inputs(args) -> list:
    if args.file:
        inputs = read_text_file(args.file) + list(args.texts)
        if not inputs:
            raise PlmlabError(f"{args.file}: no input in the file")
        return inputs
    return read_lines([], args.texts, "text", "no text given (pass it as an argument, on stdin or with --file)")


def run_verb(args, cls, show) -> int:
    """Load, run the pipeline on every input, print JSON lines or `show(result)`."""
    inputs = read_inputs(args)
    pipe = cls(*load_model_and_tokenizer(args.model, args.tokenizer, args.device), truncate=args.truncate)
    for result in pipe(inputs):
        print(json.dumps(result, ensure_ascii=False) if args.json else show(result))
    return 0


def run(args) -> int:
    return run_verb(args, TextClassification, lambda r: f"{r['label']}\t{r['score']:.4f}\t{r['text']}")
