"""`plmlab tokenizer train|encode`: train a tokenizer with HF `tokenizers`, or inspect one."""

from __future__ import annotations

import json

from ..errors import PlmlabError
from .args import positive_int

KIND_STYLE = {"bpe": "gpt2", "wordpiece": "bert", "unigram": "t5"}  # the default style of each algorithm


def register(sub) -> None:
    p = sub.add_parser("tokenizer", help="train or inspect a tokenizer")
    verbs = p.add_subparsers(dest="tokenizer_verb", metavar="ACTION")
    verbs.required = True
    t = verbs.add_parser("train", help="train a tokenizer on a corpus (default: the built-in corpus)")
    t.add_argument("--corpus", nargs="*", default=[], help="text files, folders or .jsonl (default: built-in)")
    t.add_argument("--kind", choices=sorted(KIND_STYLE), help="algorithm (picks the family style: "
                   + ", ".join(f"{k} -> {v}" for k, v in KIND_STYLE.items()) + ")")
    t.add_argument("--style", help="family style: gpt2, llama, bert, roberta, bart, albert, t5, glm (special tokens, "
                   "normalisation and what encode adds)")
    t.add_argument("--vocab-size", type=positive_int, default=8192, help="every id included (specials, T5 sentinels)")
    t.add_argument("--encoding-errors", choices=("strict", "replace"), default="strict",
                   help="undecodable bytes in the corpus: stop with an error (default) or replace them")
    t.add_argument("--out", required=True, help="directory to write tokenizer.json and its config into "
                   "(never a model's directory)")
    t.add_argument("--overwrite", action="store_true", help="replace the tokenizer an existing --out holds")
    t.set_defaults(func=train)
    e = verbs.add_parser("encode", help="show the tokens and ids of a text")
    e.add_argument("--tokenizer", required=True, help="tokenizer (or model) directory")
    e.add_argument("text", nargs="+")
    e.add_argument("--json", action="store_true")
    e.set_defaults(func=encode)


def train(args) -> int:
    from ..data import builtin_documents, read_corpus
    from ..tokenizers import STYLES, train_tokenizer
    from ..train.rundir import check_folder, write_folder

    if args.style and args.style not in STYLES:
        raise PlmlabError(f"unknown tokenizer style {args.style!r}; choose one of {', '.join(STYLES)}")
    if args.kind and args.style and STYLES[args.style].algorithm != args.kind:
        raise PlmlabError(f"--kind {args.kind} does not match --style {args.style} ({STYLES[args.style].algorithm})")
    style = args.style or KIND_STYLE[args.kind or "bpe"]
    check_folder(args.out, args.overwrite, refuse_models=True)  # refused before training, not after
    docs = read_corpus(args.corpus, errors=args.encoding_errors) if args.corpus else builtin_documents()
    tokenizer = train_tokenizer((s for doc in docs for s in doc), style, args.vocab_size)
    out = write_folder(args.out, tokenizer.save, args.overwrite, refuse_models=True)
    n_sents = sum(len(d) for d in docs)
    print(f"trained a {style} tokenizer ({tokenizer.vocab_size} ids) on {len(docs)} documents, "
          f"{n_sents} sentences -> {out}/tokenizer.json")
    return 0


def encode(args) -> int:
    from ..tokenizers import load_tokenizer

    tokenizer = load_tokenizer(args.tokenizer)
    text = " ".join(args.text)
    ids = tokenizer.encode(text)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    if args.json:
        print(json.dumps({"ids": ids, "tokens": tokens}))
    else:
        print(" ".join(f"{t}:{i}" for t, i in zip(tokens, ids)))
    return 0
