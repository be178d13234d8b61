"""The one task protocol: what any kind of training gives the Trainer (train/loop.py).

A task turns examples into a loss: pretraining (an objective over token shards, below;
distillation extends it), the fine-tuning tasks (finetune/tasks.py `ExampleTask`: the
registered classification / token classification / text2text / cloze, SFT, DPO). It never
steps an optimizer or calls backward; the Trainer does, for every task alike.

    make_order(state)   the resumable cursor over example ids, resumed at the state's (epoch,
                        position): `take(count)` -> picks [(epoch, index)], `epoch`, `position`,
                        `n` (examples per epoch). The Trainer takes `batch_size x world` picks a
                        micro-batch, keeps every world-th for its rank, and saves the cursor.
    batch(picks)        a `Batch`: the model's CPU tensors, its targets (what the loss is a mean
                        over: the Trainer weighs micro-batches by them, summed over every rank)
                        and its input tokens (throughput, `tokens` in metrics.jsonl)
    loss(model, batch)  a `Loss`: the mean loss over the batch's targets (the Trainer scales it
                        to the batch's share of the step and calls backward), the batch's
                        metrics (`Mean`s the Trainer adds up over the step's micro-batches into
                        the step's record) and the model output (a micro-batch with no targets
                        backpropagates a zero through it, as DDP / FSDP need every rank to)
    evaluate(model, autocast, device)   a record merged into the step's metrics ({} for none)
    fingerprint()       a hash of the training data: every checkpoint records it and a resume
                        with other data is refused
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import numpy as np
import torch

from ..objectives.base import Mean
from .batching import make_order
from .data import count_targets, count_tokens, fixed_batches, make_batch

Metrics = dict[str, Mean]  # a batch's accuracies and loss terms by name: mlm_accuracy, reward_margin ...


@dataclass
class Batch:
    inputs: dict[str, torch.Tensor]  # the model's keyword tensors (and what the loss reads beside them)
    targets: int  # what the loss is a mean over: target tokens, examples, pairs ...
    tokens: int  # input tokens

    def to(self, device: torch.device) -> "Batch":
        return Batch({k: v.to(device, non_blocking=True) for k, v in self.inputs.items()}, self.targets, self.tokens)


class Loss(NamedTuple):
    value: torch.Tensor  # the mean over the batch's targets
    metrics: Metrics
    output: Any  # the model output (its `logits`, and under DDP its `pooled` / `pair_logits`)


class Task(Protocol):
    def make_order(self, state) -> Any: ...

    def batch(self, picks: list[tuple[int, int]]) -> Batch: ...

    def loss(self, model: torch.nn.Module, batch: Batch) -> Loss: ...

    def evaluate(self, model: torch.nn.Module, autocast, device: torch.device) -> dict[str, float]: ...

    def fingerprint(self) -> str: ...


def add_metrics(into: Metrics, more: Metrics) -> Metrics:
    """`into` with `more` added (a metric with a zero count weighs nothing)."""
    for name, mean in more.items():
        if mean.count > 0:
            into[name] = into[name] + mean if name in into else mean
    return into


def metric_values(metrics: Metrics, prefix: str = "") -> dict[str, float]:
    return {f"{prefix}{name}": round(mean.total / mean.count, 6) for name, mean in metrics.items()}


def fingerprint_arrays(examples: list[dict], skip: tuple[str, ...] = ()) -> str:
    """sha256 of encoded examples (their arrays, in order, by key; `skip`: derived keys)."""
    h = hashlib.sha256()
    for example in examples:
        for key in sorted(k for k in example if k not in skip):
            value = np.ascontiguousarray(example[key])
            h.update(f"{key}:{value.dtype.str}:{value.shape};".encode())
            h.update(value.tobytes())
    return h.hexdigest()


class PretrainTask:
    """An objective's batches over token shards, with fixed validation batches; `fingerprint` is
    the corpus's (train/pretrain_setup.py compares it before the data is even tokenized)."""

    def __init__(self, objective, train_data, val_data, options, world: int = 1, *, fingerprint: str) -> None:
        self.objective, self.train_data, self.options, self._fingerprint = objective, train_data, options, fingerprint
        # every rank evaluates the same global batches: the same val_loss for any world size
        self.val_batches = fixed_batches(objective, val_data, options.seed, options.batch_size * world,
                                         options.eval_batches)

    @staticmethod
    def as_batch(inputs: dict[str, torch.Tensor]) -> Batch:
        return Batch(inputs, count_targets(inputs), count_tokens(inputs))

    def make_order(self, state):
        return make_order(self.objective, self.train_data, self.options, state)

    def batch(self, picks: list[tuple[int, int]]) -> Batch:
        return self.as_batch(make_batch(self.objective, self.train_data, self.options.seed, picks))

    def loss(self, model, batch: Batch) -> Loss:
        output = model(**batch.inputs)
        return Loss(output.loss, self.metrics(batch.inputs, output), output)

    def metrics(self, inputs: dict, output) -> Metrics:
        """The objective's accuracies of one batch ({} for a model output without logits)."""
        if getattr(output, "logits", None) is None:
            return {}
        with torch.no_grad():
            return self.objective.metrics(inputs, output)

    def fingerprint(self) -> str:
        return self._fingerprint

    def evaluate(self, model, autocast, device: torch.device) -> dict:
        """Mean loss over every target token of the fixed validation batches."""
        if not self.val_batches:
            return {}
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0
        accuracies: Metrics = {}
        for batch in map(self.as_batch, self.val_batches):
            if batch.targets == 0:
                continue
            with autocast():
                loss = self.loss(model, batch.to(device))
                total += loss.value.double() * batch.targets
            add_metrics(accuracies, loss.metrics)
            count += batch.targets
        value = float(total) / max(1, count)
        return {"val_loss": value, "val_ppl": math.exp(min(value, 700.0)), **metric_values(accuracies, "val_")}
