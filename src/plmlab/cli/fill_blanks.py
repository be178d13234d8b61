"""`plmlab fill-blanks --model DIR "text with [MASK] in it"`: GLM blank filling.

Each [MASK] / [sMASK] / [gMASK] is generated in turn with GLM's 2-D positions and a KV cache
(`plmlab.infill`); a text without any mask gets [gMASK] at the end, i.e. is continued.
"""

from __future__ import annotations

import json
import sys

from ..errors import PlmlabError


def register(sub) -> None:
    p = sub.add_parser("fill-blanks", help="fill the [MASK] / [sMASK] / [gMASK] blanks of a text (GLM)")
    p.add_argument("texts", nargs="*", metavar="TEXT", help="text with blanks; '-' or none reads lines from stdin")
    p.add_argument("--model", required=True, metavar="DIR", help="GLM checkpoint directory (or a training run)")
    p.add_argument("--tokenizer", metavar="DIR", help="tokenizer directory (default: the checkpoint's)")
    p.add_argument("--max-new-tokens", type=int, default=32, metavar="N", help="longest span per blank")
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int)
    p.add_argument("--top-p", type=float)
    p.add_argument("--seed", type=int, help="random seed for sampling")
    p.add_argument("--no-cache", action="store_true", help="recompute the whole sequence each step (a reference)")
    p.add_argument("--json", action="store_true", help="print one JSON object per text")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    p.set_defaults(func=run)


def run(args) -> int:
    from .. import load_pretrained
    from ..hf import resolve_dir
    from ..infill import fill_blanks
    from ..tokenizers import load_tokenizer

    texts = [t for a in (args.texts or ["-"]) for t in (_stdin() if a == "-" else [a])]
    if not texts:
        raise PlmlabError("no text given (pass it as an argument or on stdin)")
    model = load_pretrained(args.model).to(args.device)
    tokenizer = load_tokenizer(args.tokenizer or resolve_dir(args.model))
    for text in texts:
        out = fill_blanks(model, tokenizer, text, max_new_tokens=args.max_new_tokens, use_cache=not args.no_cache,
                          do_sample=args.do_sample, temperature=args.temperature, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed)
        if args.json:
            print(json.dumps({"input": text, "text": out.text, "blanks": out.blank_texts, "ids": out.ids,
                              "blank_ids": out.blanks}))
        else:
            print(out.text)
    return 0


def _stdin() -> list[str]:
    return [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
