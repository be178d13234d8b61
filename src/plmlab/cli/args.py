"""Validated argparse types, the parser whose errors are one line, and reading input texts.

Each type is a plain function of the option's string: it returns the value or raises
`argparse.ArgumentTypeError`, which argparse reports as `argument --X: MESSAGE`. Using them in
`add_argument(type=...)` turns `--temperature nan` or `--seed -1` into one line before any work.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys

from ..errors import PlmlabError
from ..pipelines.loading import check_text
from ..train.options import DECAY_SHAPES, MUON_DTYPES, OPTIMIZERS, SCHEDULES

SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes seeds in [0, 2**63) (numpy: 2**64)


class UsageError(PlmlabError):
    """A bad command line: main() prints it as one line, with a pointer to the verb's --help."""


class DefaultsFormatter(argparse.HelpFormatter):
    """argparse's help with each option's default after it, ` (default: X)`, so that `--help`
    answers "what happens if I leave it out"; not where there is nothing to show (None, False,
    an empty value) or where the help already speaks of its default (pretrain writes its own)."""

    def _format_action(self, action):
        if not action.help and _shown_default(action):  # argparse prints nothing after a help-less option
            action = copy.copy(action)
            action.help = "(default: %(default)s)"
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = (action.help or "").strip()
        if not _shown_default(action) or "default" in text.lower():
            return action.help
        return f"{text} (default: %(default)s)".lstrip()


def _shown_default(action) -> bool:
    default = action.default
    if not action.option_strings or action.help == argparse.SUPPRESS or default is argparse.SUPPRESS:
        return False
    return not (default is None or isinstance(default, bool) or default in ("", [], ()))


class Parser(argparse.ArgumentParser):
    """argparse, but an error is one line (argparse prints the whole usage first, ~20 lines for
    a verb with many options), and `--help` shows the defaults (DefaultsFormatter); sub-commands
    inherit both through add_subparsers, which builds them with this class."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args=None, namespace=None):
        """argparse's, with a hint for a flag users bring from another verb (FLAG_HINTS)."""
        known, extra = self.parse_known_args(args, namespace)
        if extra:
            hints = [hint for (verb, flag), hint in FLAG_HINTS.items()
                     if verb == getattr(known, "verb", None) and flag in extra]
            self.error(f"unrecognized arguments: {' '.join(extra)}" + "".join(f"; {h}" for h in hints[:1]))
        return known

    def error(self, message: str):
        raise UsageError(f"{message} (see {self.prog} --help)")


# Flags users bring from another verb or another trainer, with what this verb takes instead
FLAG_HINTS = {("pretrain", "--epochs"): "pretraining counts optimizer steps: use --max-steps N"}


def _number(text: str, kind, name: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {name}") from None


def finite_float(text: str) -> float:
    """Any float but nan / inf (which slip through every `<` or `>` check)."""
    value = _number(text, float, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def probability(text: str) -> float:
    """A probability in [0, 1] (top-p, min-p)."""
    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = _number(text, int, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


def seed(text: str) -> int:
    value = _number(text, int, "an integer")
    if not 0 <= value < SEED_LIMIT:
        raise argparse.ArgumentTypeError(f"a seed must be in [0, 2**63), got {text}")
    return value


def device(text: str) -> str:
    """cpu, cuda, cuda:N, mps (or auto): one that parses and exists on this machine."""
    import torch

    if text == "auto":
        return text
    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device (cpu, cuda, cuda:N, mps or auto)") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise argparse.ArgumentTypeError(f"{text!r}: no CUDA device on this machine")
        if dev.index is not None and dev.index >= count:
            raise argparse.ArgumentTypeError(f"{text!r}: this machine has {count} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: MPS is not available on this machine")
    elif dev.type != "cpu":
        raise argparse.ArgumentTypeError(f"{text!r}: plmlab runs on cpu, cuda or mps")
    return text


# --- the run flags of every training verb ------------------------------------------------------
# Declared once: pretrain, finetune, sft, dpo and distill take these, each stage with its own
# defaults (pretraining's DEFAULTS; FinetuneOptions' fields, over which a recipe sets its own).
# Values are checked where the Python API checks them too, by the options records
# (PretrainOptions, FinetuneOptions), so the kinds here are plain.
RUN_FLAGS: dict[str, tuple] = {  # name: (int | float | the choices, help)
    "max_steps": (int, "optimizer steps"),
    "epochs": (int, "passes over the data"),
    "lr": (float, "peak learning rate (AdamW's; Muon's is --muon-lr)"),
    "min_lr": (float, "the schedule's final learning rate"),
    "warmup": (float, "warm-up fraction of the steps"),
    "weight_decay": (float, "decoupled weight decay on matrices (AdamW and Muon)"),
    "beta1": (float, "AdamW beta1"),
    "beta2": (float, "AdamW beta2"),
    "optimizer": (OPTIMIZERS, "adamw, or muon: Muon for the blocks' weight matrices and AdamW (--lr) for the "
                              "embeddings, head, norms and biases"),
    "muon_lr": (float, "Muon's peak learning rate"),
    "muon_dtype": (MUON_DTYPES, "dtype of Muon's Newton-Schulz iteration (auto: bf16 on CUDA and on CPUs with "
                                "native bf16 matmul (AVX512-BF16, AMX), fp32 elsewhere, where bf16 is many times "
                                "slower)"),
    "schedule": (SCHEDULES, "learning-rate curve after the warmup; wsd: constant, then a decay to --min-lr over "
                            "the last --decay-fraction"),
    "decay_fraction": (float, "wsd: fraction of the steps that decays"),
    "decay_shape": (DECAY_SHAPES, "wsd: shape of the decay"),
}


def add_run_flags(group, defaults: dict, helps: dict[str, tuple] | None = None, resumable: bool = False) -> None:
    """RUN_FLAGS on `group` with a stage's `defaults` (a flag missing from them is not the stage's:
    pretrain has no --epochs). `helps`: name -> (kind, help) where the stage's meaning differs
    (pretrain's --warmup counts steps) or its default is derived by the run (None, said in the
    help). `resumable` (pretrain): the parser's default is None, so that a resume takes the run's
    own, and the help names the new run's."""
    for name, (kind, text) in RUN_FLAGS.items():
        if name not in defaults:
            continue
        kind, text = (helps or {}).get(name, (kind, text))
        default = defaults[name]
        options = {"choices": kind} if isinstance(kind, tuple) else {"type": kind, "metavar": _METAVARS[kind]}
        if resumable:
            text, default = (text if default is None or "default" in text else f"{text} (default {default})"), None
        group.add_argument(f"--{name.replace('_', '-')}", default=default, help=text, **options)


_METAVARS = {int: "N", float: "X"}


# --- texts from the command line, stdin or a file ---------------------------------------------
def read_lines(named: list[str], positional: list[str], what: str, none_given: str) -> list[str]:
    """`named` (--prompt ...) then the positionals, '-' standing for stdin's non-empty lines;
    stdin alone when neither is given."""
    texts = list(named)
    for p in positional:
        texts.extend(stdin_lines(what) if p == "-" else [p])
    if not named and not positional:
        texts = stdin_lines(what)
    if not texts:
        raise PlmlabError(none_given)
    for i, text in enumerate(texts, 1):
        check_text(text, f"{what} (number {i})")  # a C locale reads undecodable bytes as lone surrogates
    return texts


def stdin_lines(what: str = "line") -> list[str]:
    try:
        lines = [line.rstrip("\r\n") for line in sys.stdin if line.strip()]
    except UnicodeDecodeError as e:  # a strict UTF-8 locale
        raise PlmlabError(f"stdin is not valid UTF-8 text ({e.reason} at byte {e.start} of a {what})") from None
    return lines


def read_text_file(path: str) -> list:
    """Inputs from a file: JSONL (one object per line, e.g. {"text": ...}) when it ends in .jsonl,
    else one text per non-empty line."""
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise PlmlabError(f"{path}: no such file")
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise PlmlabError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if file.suffix != ".jsonl":
        return [line for line in lines if line.strip()]
    records = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise PlmlabError(f"{path}:{n}: not valid JSON") from None
        if not isinstance(record, (dict, str)):
            raise PlmlabError(f"{path}:{n}: expected a JSON object (or string), got {type(record).__name__}")
        records.append(record)
    return records
