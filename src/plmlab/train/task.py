"""What a task gives the Trainer (train/loop.py), and pretraining as one.

A task is whatever turns examples into a loss: pretraining (an objective over token shards,
below), a fine-tuning task (finetune/trainer_task.py), later SFT or distillation. It never
steps an optimizer or calls backward; the Trainer does, for every task alike.

    make_order(state)          the resumable cursor over example ids: `take(count)` -> picks,
                               `epoch`, `position`, `n` (examples per epoch); resumed from the
                               state's (epoch, position)
    batch(picks)               a dict of CPU tensors for the model
    count_targets(batch)       what the step's loss is a mean over (target tokens, examples ...)
    count_tokens(batch)        input tokens (throughput, `tokens` in metrics.jsonl)
    forward(model, batch)      (mean loss over the batch's targets, the model output)
    metrics(batch, output)     accuracies with their counts (train/objective_metrics.py)
    evaluate(model, autocast, device)   a record merged into the step's metrics ({} for none)
"""

from __future__ import annotations

import math

import torch

from .batching import make_order
from .data import count_targets, count_tokens, fixed_batches, make_batch
from .objective_metrics import Averager, batch_metrics


class PretrainTask:
    """An objective's batches over token shards, with fixed validation batches."""

    def __init__(self, objective, train_data, val_data, options, world: int = 1) -> None:
        self.objective, self.train_data, self.options = objective, train_data, options
        # every rank evaluates the same global batches: the same val_loss for any world size
        self.val_batches = fixed_batches(objective, val_data, options.seed, options.batch_size * world,
                                         options.eval_batches)

    def make_order(self, state):
        return make_order(self.objective, self.train_data, self.options, state)

    def batch(self, picks: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        return make_batch(self.objective, self.train_data, self.options.seed, picks)

    count_targets = staticmethod(count_targets)
    count_tokens = staticmethod(count_tokens)

    def forward(self, model, batch: dict):
        output = model(**batch)
        return output.loss, output

    def metrics(self, batch: dict, output) -> dict:
        return batch_metrics(self.objective, batch, output)

    def evaluate(self, model, autocast, device: torch.device) -> dict:
        """Mean loss over every target token of the fixed validation batches."""
        if not self.val_batches:
            return {}
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0
        accuracies = Averager()
        for batch in self.val_batches:
            n = count_targets(batch)
            if n == 0:
                continue
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            with autocast():
                output = model(**batch)
                total += output.loss.double() * n
            accuracies.add(batch_metrics(self.objective, batch, output))
            count += n
        loss = float(total) / max(1, count)
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700.0)), **accuracies.result("val_")}
