"""`plmlab objective NAME --text TEXT [--json]`: what an objective makes of a text.

The library side is `plmlab.objectives.view.objective_view`; this verb parses, prints the JSON
or renders it for a human (aligned tokens, an ASCII mask).
"""

from __future__ import annotations

import json

import numpy as np

from ..masks import IGNORE_INDEX as IGNORE
from ..objectives import OBJECTIVES, get_objective
from ..objectives.options import parse_option_items
from ..objectives.view import objective_view


def register(sub) -> None:
    p = sub.add_parser("objective", help="show what a pretraining objective makes of a text")
    p.add_argument("name", help=f"objective ({', '.join(sorted(OBJECTIVES))})")
    p.add_argument("--text", required=True, help="the text (segment A)")
    p.add_argument("--text-b", help="segment B, for pair objectives (NSP, SOP)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tokenizer", help="tokenizer directory (default: the family's, trained on the built-in corpus)")
    p.add_argument("--seq-len", type=int, default=512, help="maximum sequence length")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="objective option, e.g. --set mask_prob=0.3 (repeatable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def parse_options(items: list[str]) -> dict:
    return parse_option_items(items, "--set")


def run(args) -> int:
    cls = get_objective(args.name)
    from ..tokenizers import builtin_tokenizer, load_tokenizer

    options = parse_options(args.set)
    cls.parse_options(options)  # a bad option is refused before a tokenizer is loaded or trained
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else builtin_tokenizer(cls.tokenizer_style)
    out = objective_view(args.name, args.text, args.text_b, tokenizer, args.seed, args.seq_len, **options)
    if args.json:
        print(json.dumps(out))
    else:
        print(render(out, tokenizer))
    return 0


def render(out: dict, tokenizer) -> str:
    """Aligned columns, one row per input position, plus an ASCII view of a 2-D mask."""
    n = len(out["input_ids"])
    cols: dict[str, list[str]] = {"pos": [str(i) for i in range(n)], "token": out["tokens"],
                                  "id": [str(i) for i in out["input_ids"]]}
    labels = out.get("labels")
    if labels is not None and len(labels) == n:
        cols["label"] = [("" if t == IGNORE else tokenizer.id_to_token(t)) for t in labels]
    for key in ("token_type_ids", "attention_mask", "position_ids"):
        value = out.get(key)
        if value is None:
            continue
        if np.ndim(value) == 1 and len(value) == n:
            cols[key.removesuffix("_ids")] = [str(v) for v in value]
        elif np.ndim(value) == 2 and len(value) == 2 and len(value[0]) == n:  # GLM's two position rows
            cols["pos1"] = [str(v) for v in value[0]]
            cols["pos2"] = [str(v) for v in value[1]]
    widths = {k: max(len(k), *(len(v) for v in vals)) for k, vals in cols.items()}
    lines = ["  ".join(k.ljust(widths[k]) for k in cols)]
    lines += ["  ".join(cols[k][i].ljust(widths[k]) for k in cols) for i in range(n)]
    if labels is not None and len(labels) != n:  # encoder-decoder targets
        lines.append("target: " + " ".join(tokenizer.id_to_token(t) or str(t) for t in labels if t != IGNORE))
    mask = out.get("attention_mask")
    if mask is not None and np.ndim(mask) == 2 and len(mask) == n:
        lines.append("attention (row = query, # = may attend):")
        lines += [f"{i:>4} " + "".join("#" if m else "." for m in row) for i, row in enumerate(mask)]
    for key, value in out.items():
        if np.ndim(value) == 0 and key not in ("objective",) and not key.endswith("token_id"):
            lines.append(f"{key}: {value}")
    return "\n".join(lines)
