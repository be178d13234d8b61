"""Declared objective options: one dataclass per objective, every field typed, ranged and helped.

An objective's `Options` dataclass is the single source of what it takes: `--objective-set
KEY=VALUE`, `plmlab objective NAME --set KEY=VALUE`, the library's keyword arguments and the
`plmlab pretrain` flags (`--mask-prob`, `--ngram`, ...) are all read from it. Each field is made
with `option(...)`, whose `Rule` says its kind, its allowed range or choices and its one-line
help, so a wrong value is one clear line before any work:

    objective mlm: ngram must be an integer, got 'x'
    objective mlm: mask_prob must be in [0, 1), got nan
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import PlmlabError

_KIND_WORDS = {float: "a number", int: "an integer", bool: "true or false", str: "a string",
               tuple: "a list of numbers", list: "a list"}


@dataclass(frozen=True)
class Rule:
    """How one option is checked and offered on the command line."""

    kind: type  # float | int | bool | str | tuple (of floats) | list
    help: str
    low: float | None = None  # None: unbounded
    high: float | None = None
    open_low: bool = False  # (low, ... rather than [low, ...
    open_high: bool = False
    choices: tuple[str, ...] | None = None
    flag: str | None = None  # a `plmlab pretrain` flag for it (--mask-prob), besides --objective-set
    metavar: str | None = None

    def convert(self, name: str, value: Any, where: str) -> Any:
        """The value in its declared kind, or a one-line error naming the option."""
        if isinstance(value, str):
            value = self.from_text(value)  # a number given as text ("nan" from KEY=VALUE, "0.3" from YAML)
        ok = {float: isinstance(value, (int, float)) and not isinstance(value, bool),
              int: isinstance(value, int) and not isinstance(value, bool),
              bool: isinstance(value, bool), str: isinstance(value, str),
              tuple: isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                               for v in value),
              list: isinstance(value, list)}[self.kind]
        if not ok:
            raise PlmlabError(f"{where}: {name} must be {_KIND_WORDS[self.kind]}, got {value!r}")
        value = float(value) if self.kind is float else tuple(float(v) for v in value) if self.kind is tuple else value
        if self.choices is not None and value not in self.choices:
            raise PlmlabError(f"{where}: {name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.kind in (float, int) and not self.in_range(value):
            raise PlmlabError(f"{where}: {name} must be {self.range_text()}, got {value!r}")
        return value

    def in_range(self, value: float) -> bool:
        if not math.isfinite(value):
            return False  # nan passes no comparison; inf is never a sensible rate or length
        low_ok = self.low is None or (value > self.low if self.open_low else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.open_high else value <= self.high)
        return low_ok and high_ok

    def range_text(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.open_low else '['}{self.low:g}, {self.high:g}{')' if self.open_high else ']'}"
        if self.low is not None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        return f"{'<' if self.open_high else '<='} {self.high:g}" if self.high is not None else "finite"

    def from_text(self, text: str) -> Any:
        """A command-line flag's value in this kind where it parses (argparse `type=`); otherwise the
        text itself, which `convert` then refuses in one line (never argparse's usage dump)."""
        if self.kind in (float, int):
            try:
                return self.kind(text)
            except ValueError:
                return text
        return text


def option(default: Any, kind: type, help: str, **rule: Any) -> Any:
    """A dataclass field carrying its `Rule` (mutable defaults are copied per instance)."""
    meta = {"rule": Rule(kind, help, **rule)}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class ObjectiveOptions:
    """Base of every objective's options; subclasses add `option(...)` fields and may check
    combinations of fields in `__post_init__`."""

    nullable: ClassVar[frozenset[str]] = frozenset()  # fields that may also be None

    @classmethod
    def rules(cls) -> dict[str, Rule]:
        return {f.name: f.metadata["rule"] for f in dataclasses.fields(cls)}

    @classmethod
    def names(cls) -> list[str]:
        return sorted(cls.rules())

    @classmethod
    def parse(cls, values: dict[str, Any], objective: str, defaults: dict[str, Any] | None = None) -> "ObjectiveOptions":
        """Checked options from given `values` over the objective's own `defaults`."""
        rules = cls.rules()
        unknown = sorted(set(values) - set(rules))
        if unknown:
            raise PlmlabError(f"unknown option(s) for objective {objective}: {', '.join(unknown)} "
                              f"(its options: {', '.join(sorted(rules)) or 'none'})")
        where = f"objective {objective}"
        given = {k: v if v is None and k in cls.nullable else rules[k].convert(k, v, where) for k, v in values.items()}
        return cls(**{**(defaults or {}), **given})


def option_value(text: str) -> Any:
    """A KEY=VALUE item's value: JSON where it parses as JSON ('0.3', 'true', '[1, 2]'), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def parse_option_items(items: list[str], what: str = "--objective-set") -> dict[str, Any]:
    """`KEY=VALUE` items (dashes in keys read as underscores: short-seq-prob = short_seq_prob)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise PlmlabError(f"invalid {what} {item!r}: expected KEY=VALUE")
        out[key.strip().replace("-", "_")] = option_value(raw)
    return out
