"""`plmlab fill-mask --model DIR "text with [MASK]"`: the MLM head's top-k tokens per mask
(plmlab.pipelines.FillMask). `[MASK]` and `<mask>` are both accepted, whatever the tokenizer's."""

from __future__ import annotations

import json

from ..pipelines import FillMask, load_model_and_tokenizer
from .args import device, positive_int


def register(sub) -> None:
    p = sub.add_parser("fill-mask", help="predict the masked tokens of a text with an MLM model")
    p.add_argument("text", nargs="+", help="text(s) with one or more [MASK] / <mask>")
    p.add_argument("--model", required=True, help="checkpoint directory (plmlab or Hugging Face)")
    p.add_argument("--tokenizer", help="tokenizer directory (default: the model directory)")
    p.add_argument("--top-k", type=positive_int, default=5)
    p.add_argument("--truncate", action="store_true", help="cut texts longer than the model's context")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.add_argument("--device", type=device, default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    p.set_defaults(func=run)


def run(args) -> int:
    fill = FillMask(*load_model_and_tokenizer(args.model, args.tokenizer, args.device),
                    top_k=args.top_k, truncate=args.truncate)
    for text in args.text:
        result = fill(text)
        if args.json:
            print(json.dumps(result))
            continue
        print(text)
        masks = result["masks"]
        for k, record in enumerate(masks, 1):
            if len(masks) > 1:
                print(f"  mask {k} (position {record['position']}):")
            for p in record["predictions"]:
                print(f"    {p['score']:7.4f}  {p['token']:<16} {p['sequence']}")
    return 0
