"""Text-to-text examples (T5, Raffel et al. 2020, section 2.4) and T5's multi-task mixture
(section 3.5.2): span corruption mixed with supervised tasks by given rates.

A supervised task is a JSONL file of {"input": ..., "target": ...} lines and a task prefix
("summarize: ", "sst2 sentence: "): encoder input = prefix + input + </s>, labels = target + </s>.
Classification is text-to-text too: the target is the label word ("positive").

A mixture example first draws its source with the example's own generator (rates need not sum
to 1; they are normalised), then an item of that source uniformly: a span-corruption window of
the token data, or a line of a task file. So an example still depends only on (seed, epoch,
index), and the expected share of each source is its rate (T5's "mixing rate" sampling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.records import read_text_pairs
from ..data.shards import TokenData
from ..errors import PlmlabError
from .base import Objective
from .options import option
from .span import SpanCorruption, SpanOptions


# --- text-to-text data ------------------------------------------------------------------------------
def read_text2text(path: str | Path) -> list[tuple[str, str]]:
    """(input, target) pairs of a JSONL (or CSV) file; every record must have a non-empty input
    and target (data/records.py reads it, as it reads fine-tuning data)."""
    return [(source, target) for _, source, target in read_text_pairs(path)]


def encode_text2text(tokenizer, pairs: list[tuple[str, str]], prefix: str, max_input: int, max_target: int,
                     truncate: bool = False, where: str = "", names: list[str] | None = None) -> list[dict[str, np.ndarray]]:
    """Encoder inputs (prefix + input + </s>) and labels (target + </s>) of each pair.

    Too long: an error naming the first offending example (`names[i]`, else "example i" after
    `where`), or cut (keeping the final </s>) when `truncate`."""
    eos = tokenizer.eos_id
    if eos is None:
        raise PlmlabError("text-to-text needs a tokenizer with an end-of-sequence token (</s>)")
    inputs = tokenizer.encode_batch([prefix + a for a, _ in pairs])
    targets = tokenizer.encode_batch([b for _, b in pairs])
    out = []
    for n, (x, y) in enumerate(zip(inputs, targets), 1):
        name = names[n - 1] if names else f"{where}example {n}"
        x, y = _fit(x, max_input, eos, truncate, f"{name}: input"), _fit(y, max_target, eos, truncate, f"{name}: target")
        out.append({"input_ids": x, "attention_mask": np.ones_like(x), "labels": y})
    return out


def _fit(ids: list[int], limit: int, eos: int, truncate: bool, what: str) -> np.ndarray:
    if len(ids) + 1 > limit:
        if not truncate:
            raise PlmlabError(f"{what} has {len(ids) + 1} tokens with </s>, more than the {limit} allowed "
                              "(raise the limit or ask for truncation)")
        ids = ids[: limit - 1]
    return np.asarray(list(ids) + [eos], dtype=np.int64)


# --- the mixture ------------------------------------------------------------------------------------
@dataclass
class Task:
    name: str
    rate: float
    examples: list[dict[str, np.ndarray]]


@dataclass
class MixtureOptions(SpanOptions):
    """Span corruption's options (for its share of the mixture) plus the supervised tasks."""

    nullable = frozenset({"tasks", "max_target_length"})
    tasks: list | None = option(None, list, 'supervised tasks: [{"path": FILE.jsonl, "rate": R, "prefix": TEXT}]')
    span_rate: float = option(1.0, float, "mixing rate of span corruption", low=0)
    max_target_length: int | None = option(None, int, "longest task target in tokens (default: seq_len)", low=1)


class Mixture(Objective):
    """Span corruption (rate `span_rate`) + supervised `tasks`: a list of
    {"path": FILE.jsonl, "rate": R, "prefix": "summarize: ", "name": optional}. Targets may be
    up to `max_target_length` tokens (default: seq_len)."""

    name = "mixture"
    tokenizer_style = "t5"
    Options = MixtureOptions
    fits = SpanCorruption.fits
    demo = SpanCorruption.demo

    def __init__(self, tokenizer, seq_len: int, **options) -> None:
        super().__init__(tokenizer, seq_len, **options)
        o = self.opts
        self.span = SpanCorruption(tokenizer, seq_len, noise_density=o.noise_density,
                                   mean_noise_span_length=o.mean_noise_span_length, truncate=o.truncate)
        self.tasks = [self._task(spec, i, o.max_target_length or seq_len, o.truncate) for i, spec in enumerate(o.tasks or [])]
        rates = np.array([o.span_rate] + [t.rate for t in self.tasks], dtype=np.float64)
        if (rates < 0).any() or rates.sum() <= 0:
            raise PlmlabError(f"mixture rates must be >= 0 with a positive sum, got {rates.tolist()}")
        self.rates = rates / rates.sum()

    def _task(self, spec, i: int, max_target: int, truncate: bool) -> Task:
        if not isinstance(spec, dict) or "path" not in spec:
            raise PlmlabError(f'mixture task {i}: expected {{"path": FILE, "rate": R, "prefix": TEXT}}, got {spec!r}')
        rate = float(spec.get("rate", 1.0))
        pairs = read_text2text(spec["path"])
        examples = encode_text2text(self.tokenizer, pairs, spec.get("prefix", ""), self.seq_len, max_target,
                                    truncate, where=f"{spec['path']}: ")
        return Task(spec.get("name") or Path(spec["path"]).stem, rate, examples)

    def num_examples(self, data: TokenData) -> int:
        return self.span.num_examples(data) + sum(len(t.examples) for t in self.tasks)

    def source(self, rng: np.random.Generator) -> int:
        """0 = span corruption, i = task i - 1."""
        return int(rng.choice(len(self.rates), p=self.rates))

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        s = self.source(rng)
        n_windows = self.span.num_examples(data)
        if s == 0 and n_windows:
            return self.span.example(data, int(rng.integers(n_windows)), rng)
        task = self.tasks[s - 1] if s else self.tasks[int(rng.integers(len(self.tasks)))]
        return dict(task.examples[int(rng.integers(len(task.examples)))])

    def from_ids(self, ids, rng, ids_b=None):
        return self.span.from_ids(ids, rng, ids_b)

    def describe(self, example: dict) -> dict:
        return {**self.span.describe(example),
                "mixture": {"span-corruption": float(self.rates[0]),
                            **{t.name: float(r) for t, r in zip(self.tasks, self.rates[1:])}}}


OBJECTIVES = {"mixture": Mixture}
