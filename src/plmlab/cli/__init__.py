"""The `plmlab` command: one sub-command per verb, each a thin layer over a library function.

Each verb lives in its own module here with `register(subparsers)`; adding a verb is one
module plus one line in VERBS.
"""

from __future__ import annotations

import errno
import signal
import sys

from ..errors import PlmlabError
from ..registry import import_present
from .args import Parser

VERBS = ("info", "pretrain", "generate", "tokenizer", "objective", "fill-mask", "fill-blanks", "classify", "tag",
         "finetune", "sft", "dpo", "distill", "merge-lora", "chat", "plot", "evaluate", "serve", "experiment")

OS_HINTS = {errno.EFBIG: "a file size limit was reached (see `ulimit -f`)", errno.ENOSPC: "the disk is full",
            errno.EDQUOT: "the disk quota is exhausted"}


def build_parser() -> Parser:
    parser = Parser(
        prog="plmlab",
        description="Build, pretrain, fine-tune, evaluate and run pretrained language models.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="verb", metavar="COMMAND")
    sub.required = True
    for module in import_present(__name__, VERBS):
        module.register(sub)
    return parser


def version_text() -> str:
    """`plmlab 0.1.0 (torch 2.13.0+cpu)`: the installed package's version, and torch's, which
    decides most of what a run does and how fast."""
    import torch

    from ..train.setup import package_version

    return f"plmlab {package_version()} (torch {torch.__version__})"


def main(argv: list[str] | None = None) -> int:
    _ignore_file_size_signal()
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except PlmlabError as e:
        print(f"plmlab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("plmlab: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `plmlab ... | head`
        return 0
    except OSError as e:  # writing an output failed: the disk, a quota, permissions
        print(f"plmlab: error: {describe_os_error(e)}", file=sys.stderr)
        return 2


def describe_os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    hint = OS_HINTS.get(e.errno)
    return f"{where}{e.strerror or e}" + (f": {hint}" if hint else "")


def _ignore_file_size_signal() -> None:
    """Past `ulimit -f`, the kernel sends SIGXFSZ, whose default action kills the process without
    a word (and without the cleanup of partial files); ignored, the write fails with EFBIG instead
    and surfaces as one error line. CPython ignores it at start-up; an interpreter embedded
    without signal handlers does not, so main() makes sure."""
    if hasattr(signal, "SIGXFSZ"):
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        except ValueError:  # not the main thread (main() called from a worker thread)
            pass
