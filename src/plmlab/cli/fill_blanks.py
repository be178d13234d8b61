"""`plmlab fill-blanks --model DIR "text with [MASK] in it"`: GLM blank filling
(plmlab.pipelines.FillBlanks); a text without any mask gets [gMASK] at the end, i.e. is continued."""

from __future__ import annotations

import json

from ..pipelines import FillBlanks, load_model_and_tokenizer
from .args import device, non_negative_float, non_negative_int, positive_int, probability, read_lines, seed


def register(sub) -> None:
    p = sub.add_parser("fill-blanks", help="fill the [MASK] / [sMASK] / [gMASK] blanks of a text (GLM)")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="text with blanks; '-' or none reads lines from stdin")
    p.add_argument("--model", required=True, metavar="DIR", help="GLM checkpoint directory (or a training run)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--max-new-tokens", type=positive_int, default=32, metavar="N", help="longest span per blank")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=non_negative_float, default=1.0)
    p.add_argument("--top-k", type=non_negative_int)
    p.add_argument("--top-p", type=probability)
    p.add_argument("--seed", type=seed, help="random seed for sampling")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step (a reference)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    texts = read_lines([], args.texts, "text", "no text given (pass it as an argument or on stdin)")
    fill = FillBlanks(*load_model_and_tokenizer(args.model, args.tokenizer, args.device),
                      max_new_tokens=args.max_new_tokens, use_cache=not args.no_cache, do_sample=args.do_sample,
                      temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    for text in texts:
        result = fill(text)
        print(json.dumps(result) if args.json else result["text"])
    return 0
