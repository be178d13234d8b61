"""A fine-tuning task as the Trainer sees it (train/task.py's contract): encoded examples in
batches of `batch_size`, cut from each epoch's seeded permutation (an epoch's last batch may be
smaller; no batch straddles two epochs), the task's loss, and its evaluation as `eval_*`."""

from __future__ import annotations

import numpy as np
import torch

from ..train.batching import TokenBatchOrder


class EpochBatches(TokenBatchOrder):
    """Batches of `batch_size` examples cut from each epoch's permutation (the last one of an
    epoch smaller). Every example weighs one "token", so TokenBatchOrder's cut, its OOM
    back-off halving and DDP's share of a global batch apply as they are."""

    def __init__(self, n: int, batch_size: int, seed: int, epoch: int = 0, position: int = 0) -> None:
        super().__init__(np.ones(n, dtype=np.int64), batch_size, seed, epoch, position, batch_size=batch_size)

    def permutation(self, epoch: int) -> np.ndarray:
        # fine-tuning's own stream, seeded by (seed, epoch number from 1)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch + 1]).permutation(self.n)
            self._perm_epoch = epoch
        return self._perm


class FinetuneTask:
    def __init__(self, task, examples: list[dict], eval_batches: list[dict], tokenizer, batch_size: int,
                 seed: int) -> None:
        self.task, self.examples, self.eval_batches = task, examples, eval_batches
        self.tokenizer, self.batch_size, self.seed = tokenizer, batch_size, seed

    def make_order(self, state) -> "EpochBatches":
        return EpochBatches(len(self.examples), self.batch_size, self.seed, state.epoch, state.position)

    def batch(self, picks: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        return self.task.collate([self.examples[i] for _, i in picks], self.tokenizer)

    def count_targets(self, batch: dict) -> int:
        return self.task.count_targets(batch)

    @staticmethod
    def count_tokens(batch: dict) -> int:
        mask = batch.get("attention_mask")
        return int(mask.sum()) if mask is not None and mask.dim() == 2 else batch["input_ids"].numel()

    def forward(self, model, batch: dict):
        return self.task.forward(model, batch)

    def metrics(self, batch: dict, output) -> dict:
        return {}

    def evaluate(self, model, autocast, device: torch.device) -> dict:
        if not self.eval_batches:
            return {}
        batches = [{k: v.to(device) for k, v in b.items()} for b in self.eval_batches]
        with autocast():
            scores = self.task.evaluate(model, batches)
        return {f"eval_{k}": v for k, v in scores.items()}


def collate_all(task, examples: list[dict], tokenizer, size: int) -> list[dict]:
    """Fixed evaluation batches, in file order."""
    return [task.collate(examples[s:s + size], tokenizer) for s in range(0, len(examples), size)]


def steps_per_epoch(n_examples: int, batch_size: int, world: int = 1, grad_accum: int = 1) -> int:
    """Steps of one epoch: its batches, `world x grad_accum` of them per step (where they do not
    divide evenly, an "epoch" of steps ends a batch or so off the data's epoch boundary)."""
    batches = -(-n_examples // batch_size)
    return max(1, batches // (world * grad_accum))
