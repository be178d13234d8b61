"""The `plmlab` command: one sub-command per verb, each a thin layer over a library function.

Each verb lives in its own module here with `register(subparsers)`; adding a verb is one
module plus one line in VERBS.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import PlmlabError

VERBS = ("info", "pretrain", "generate", "tokenizer", "objective", "fill-mask", "fill-blanks", "finetune",
         "evaluate", "plot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plmlab",
        description="Build, pretrain, fine-tune, evaluate and run pretrained language models.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for verb in VERBS:
        try:
            module = importlib.import_module(f"{__name__}.{verb.replace('-', '_')}")
        except ModuleNotFoundError as e:  # a verb whose capability has not landed yet
            if e.name != f"{__name__}.{verb.replace('-', '_')}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except PlmlabError as e:
        print(f"plmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plmlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `plmlab ... | head`
        return 0
