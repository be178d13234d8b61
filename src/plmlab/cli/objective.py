"""`plmlab objective NAME --text TEXT [--json]`: what an objective makes of a text.

The library side is `plmlab.objectives.view.objective_view`; this verb parses, prints the JSON
or renders it for a human (aligned tokens, an ASCII mask).
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX as IGNORE
from ..objectives import OBJECTIVES, get_objective
from ..objectives.options import parse_option_items
from ..objectives.view import objective_view


def register(sub) -> None:
    p = sub.add_parser("objective", help="show what a pretraining objective (or SFT) makes of a text")
    p.add_argument("name", help=f"objective ({', '.join(sorted(OBJECTIVES))}), or sft (a view of SFT's "
                                "encoding: --messages FILE)")
    p.add_argument("--text", help="the text (segment A); required except for sft")
    p.add_argument("--messages", metavar="FILE", help='sft: a JSON conversation ([{"role", "content"}, ...], '
                                                       '{"messages": [...]} or {"prompt", "response"})')
    p.add_argument("--train-on-prompt", action="store_true", help="sft: the loss on every token")
    p.add_argument("--text-b", help="segment B, for pair objectives (NSP, SOP)")
    p.add_argument("--pairs", metavar="FILE", help='tlm: show the first pair of a JSONL pair file '
                   '({"src", "tgt", "src_lang", "tgt_lang"} per line)')
    p.add_argument("--lang", metavar="NAME", help="clm / mlm: the language of --text (XLM's language ids; "
                                                   "ids from --set languages=[...], else this one alone)")
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
    if args.name == SFT:
        return _sft_view(args)
    if args.text is None and not args.pairs:
        raise PlmlabError("the following argument is required: --text")
    cls = get_objective(args.name)
    from ..tokenizers import builtin_tokenizer, load_tokenizer

    options = parse_options(args.set)
    if args.lang is not None:
        if "lang" not in cls.Options.names():
            raise PlmlabError(f"--lang is for objectives that show one text's language (clm, mlm), not {args.name}"
                              + ("; tlm takes --set src_lang=... --set tgt_lang=..." if args.name == "tlm" else ""))
        options["lang"] = args.lang
    cls.parse_options(options)  # a bad option is refused before a tokenizer is loaded or trained
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else builtin_tokenizer(cls.tokenizer_style)
    if args.pairs:
        if args.name != "tlm":
            raise PlmlabError(f"--pairs is for the tlm objective, not {args.name}")
        from ..objectives.view import pairs_view

        out = pairs_view(args.pairs, tokenizer, args.seed, args.seq_len, **options)
    else:
        out = objective_view(args.name, args.text, args.text_b, tokenizer, args.seed, args.seq_len, **options)
    if args.json:
        print(json.dumps(out))
    else:
        print(render(out, tokenizer))
    return 0


SFT = "sft"  # not a pretraining objective: a view of the SFT task's encoding (finetune/sft_data.py)


def _sft_view(args) -> int:
    from ..finetune.sft_data import conversation, sft_view, two_d_model
    from ..tokenizers import builtin_tokenizer, load_tokenizer
    from ..tokenizers.chat import with_chat_template

    if not args.messages:
        raise PlmlabError("plmlab objective sft needs --messages FILE (a JSON conversation)")
    record = conversation(_read_conversation(args.messages), args.messages)
    tokenizer = with_chat_template(load_tokenizer(args.tokenizer) if args.tokenizer else builtin_tokenizer("gpt2"))
    two_d = two_d_model(args.tokenizer)  # --tokenizer a 2-D GLM's checkpoint: its Part A + Part B layout
    out = sft_view(tokenizer, record, args.seq_len, args.train_on_prompt, two_d=two_d)
    print(json.dumps(out) if args.json else render(out, tokenizer))
    if two_d and not args.json:
        n_a = out["part_a_length"]
        print(f"Part A: positions 0-{n_a - 1} (the conversation and [gMASK], bidirectional); Part B: "
              f"{n_a}-{len(out['input_ids']) - 1} (<sop> and the last answer, causal); one example per "
              f"assistant turn, {out['examples']} here, the last shown")
    return 0


def _read_conversation(path: str):
    """A JSON file: a list of messages or one record; a JSONL file: its first line."""
    try:
        text = open(path, encoding="utf-8").read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlmlabError(f"cannot read {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except ValueError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            data = json.loads(lines[0]) if lines else None
        except ValueError as e:
            raise PlmlabError(f"{path}: not JSON ({e})") from None
    return {"messages": data} if isinstance(data, list) else data if isinstance(data, dict) else {}


def render(out: dict, tokenizer) -> str:
    """Aligned columns, one row per input position, plus an ASCII view of a 2-D mask."""
    n = len(out["input_ids"])
    cols: dict[str, list[str]] = {"pos": [str(i) for i in range(n)], "token": out["tokens"],
                                  "id": [str(i) for i in out["input_ids"]]}
    labels = out.get("labels")
    if labels is not None and len(labels) == n:
        cols["label"] = [("" if t == IGNORE else tokenizer.id_to_token(t)) for t in labels]
    for key in ("token_type_ids", "attention_mask", "position_ids", "language_ids"):
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
