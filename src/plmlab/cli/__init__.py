"""The `plmlab` command: one sub-command per verb, each a thin layer over a library function.

Each verb lives in its own module here with `register(subparsers)`; adding a verb is one
module plus one line in VERBS.
"""

from __future__ import annotations

import argparse
import sys

from ..errors import PlmlabError
from ..registry import import_present

VERBS = ("info", "pretrain", "generate", "tokenizer", "objective", "fill-mask", "fill-blanks", "finetune",
         "evaluate", "plot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="plmlab",
        description="Build, pretrain, fine-tune, evaluate and run pretrained language models.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for module in import_present(__name__, VERBS):
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
