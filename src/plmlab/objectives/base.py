"""The objective interface: a pure, seeded map from token data to training examples.

An objective never touches a model. The trainer asks it for example `index` of an epoch with
a generator seeded from (seed, epoch, index), so an example depends on nothing else: not on
the worker count, the rank, or whether the run was resumed. `collate` pads a list of
examples into a batch of tensors whose keys are the model's keyword arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.shards import TokenData
from ..masks import IGNORE_INDEX
from ..families.fits import Fits
from .options import ObjectiveOptions


def example_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator for one example: a pure function of (seed, epoch, index)."""
    return np.random.default_rng([seed, epoch, index])


@dataclass(frozen=True)
class Mean:
    """A metric of a batch as what it averages: `total` over `count` (an accuracy: the hits over
    the targets). Means of several batches add exactly (train/task.py `add_metrics`), so a
    step's or an evaluation's value is weighted by every batch's count."""

    total: float
    count: int

    def __add__(self, other: "Mean") -> "Mean":
        return Mean(self.total + other.total, self.count + other.count)

    @property
    def value(self) -> float:
        return self.total / self.count if self.count else 0.0


def token_accuracy(batch: dict, output) -> dict[str, Mean]:
    """Target-token accuracy: argmax of the logits against labels != -100 (which every objective
    aligns with the logits)."""
    labels, logits = batch.get("labels"), getattr(output, "logits", None)
    if labels is None or logits is None or logits.shape[:-1] != labels.shape:
        return {}
    sel = labels != IGNORE_INDEX
    count = int(sel.sum())
    correct = int((logits.argmax(-1)[sel] == labels[sel]).sum()) if count else 0
    return {"token_accuracy": Mean(correct, count)}


def pad_and_stack(examples: list[dict[str, np.ndarray]], pad_values: dict[str, int]) -> dict[str, torch.Tensor]:
    """Right-pad per-token arrays to the longest example (1-D, 2-D position rows and square
    2-D masks alike; `pad_values[key]`, else 0) and stack everything into int64 tensors."""
    batch: dict[str, torch.Tensor] = {}
    for key in examples[0]:
        arrays = [np.asarray(e[key]) for e in examples]
        if arrays[0].ndim == 0:
            batch[key] = torch.as_tensor(np.stack(arrays))
            continue
        shape = np.max([a.shape for a in arrays], axis=0)
        out = np.full((len(arrays), *shape), pad_values.get(key, 0), dtype=np.int64)
        for i, a in enumerate(arrays):
            out[(i, *[slice(0, n) for n in a.shape])] = a
        batch[key] = torch.from_numpy(out)
    return batch


@dataclass
class NoOptions(ObjectiveOptions):
    """An objective that takes no options (causal LM)."""


class Objective:
    """Subclasses set `name`, declare what they are (below) and implement `num_examples`,
    `example` and `from_ids`. Nothing outside the registry asks an objective's name: the trainer,
    the CLI and the demos read these declarations."""

    name: str = ""
    tokenizer_style: str = "gpt2"  # the tokenizer `plmlab objective NAME` trains when none is given
    Options: type[ObjectiveOptions] = NoOptions  # what it takes (objectives/options.py)
    option_defaults: dict[str, Any] = {}  # a variant's own defaults over Options' (ALBERT: ngram 3)
    fits: Fits = Fits(arch="decoder")  # the models it can train (families/fits.py)
    needs_eos: bool = False  # puts the end-of-text token between documents (the tokenizer must have one)
    causal_lm_baselines: bool = False  # its loss compares with unigram / bigram next-token baselines
    demo: str | None = None  # the end-of-run demonstration (train/demo.py DEMOS): fill-mask, ...
    # Keys that hold per-token sequences and the value that pads them; others are stacked.
    pad_values: dict[str, int] = {"input_ids": 0, "labels": IGNORE_INDEX, "attention_mask": 0,
                                  "token_type_ids": 0, "position_ids": 0}

    def __init__(self, tokenizer: Any, seq_len: int, **options: Any) -> None:
        self.tokenizer = tokenizer
        self.seq_len = seq_len
        self.options = options  # as given (GLM reads which rates were explicit)
        self.opts = self.parse_options(options)

    @classmethod
    def parse_options(cls, options: dict[str, Any]) -> ObjectiveOptions:
        """The checked options (one-line errors for unknown keys, wrong kinds, out of range)."""
        return cls.Options.parse(options, cls.name, cls.option_defaults)

    def attach_model(self, model) -> None:
        """Objectives that read the model being trained keep it here (MacBERT's similar words come
        from its input embeddings); the default reads nothing."""

    def follow_steps(self, step_of, max_steps: int) -> None:
        """The Trainer's step hook: `step_of()` is the (1-based) step of `max_steps` the next batch
        is for. Objectives whose examples change over a run (ERNIE's staged masking) keep it; the
        default ignores it."""

    @classmethod
    def check_fits(cls, config) -> None:
        """Refuse, in one line naming what fits, a model this objective cannot train."""
        cls.fits.check(cls.name, config)

    def rng_for(self, seed: int, epoch: int, index: int) -> np.random.Generator:
        """The generator the trainer passes to `example` for example `index` of `epoch`.

        Default: `example_rng(seed, epoch, index)`, a fresh draw every epoch (RoBERTa's dynamic
        masking). BERT's static masking overrides it with `epoch % copies`, so an example
        comes back with the same mask every `copies` epochs.
        """
        return example_rng(seed, epoch, index)

    def num_examples(self, data: TokenData) -> int:
        raise NotImplementedError

    def example(self, data: TokenData, index: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def from_ids(self, ids: list[int], rng: np.random.Generator, ids_b: list[int] | None = None) -> dict[str, np.ndarray]:
        """What the objective makes of one text's token ids (the `plmlab objective` view)."""
        raise NotImplementedError

    def describe(self, example: dict) -> dict:
        """Extra fields of the `plmlab objective` JSON view (sentinels, Part A / Part B, ...)."""
        return {}

    def metrics(self, batch: dict, output) -> dict[str, Mean]:
        """Accuracies of one batch (each a `Mean`: hits over its count); default `token_accuracy`."""
        return token_accuracy(batch, output)

    def collate(self, examples: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
        return pad_and_stack(examples, self.pad_values)
