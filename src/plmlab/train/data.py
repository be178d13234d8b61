"""The order in which a run sees its examples, as a resumable cursor.

Epoch e visits the objective's example indices in the permutation seeded by (seed, e); an
example itself is a pure function of (seed, epoch, index) (`Objective.rng_for`: static
masking maps the epoch to `epoch % copies`). So the
whole data state of a run is the cursor (epoch, position in that epoch's permutation): save
two integers and a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data.shards import TokenData
from ..objectives import Objective

_PERMUTATION = 0x7065726D  # "perm": keeps permutation streams apart from example streams


def pretrain_shuffle(seed: int, epoch: int, n: int) -> np.ndarray:
    """Pretraining's permutation of epoch `epoch`: its own stream of (seed, epoch)."""
    return np.random.default_rng([_PERMUTATION, seed, epoch]).permutation(n)


def finetune_shuffle(seed: int, epoch: int, n: int) -> np.ndarray:
    """Fine-tuning's permutation of epoch `epoch`: the stream of (seed, epoch number from 1)."""
    return np.random.default_rng([seed, epoch + 1]).permutation(n)


class ExampleOrder:
    """The cursor (epoch, position) over `n` examples, visited in each epoch's `shuffle(seed, epoch, n)`."""

    def __init__(self, n_examples: int, seed: int, epoch: int = 0, position: int = 0,
                 shuffle=pretrain_shuffle) -> None:
        self.n, self.seed, self.epoch, self.position = n_examples, seed, epoch, position
        self.shuffle = shuffle
        self._perm_epoch, self._perm = -1, np.empty(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = self.shuffle(self.seed, epoch, self.n)
            self._perm_epoch = epoch
        return self._perm

    def take(self, count: int) -> list[tuple[int, int]]:
        """The next `count` (epoch, example index) pairs; a batch may straddle two epochs."""
        picks = []
        while len(picks) < count:
            if self.position == self.n:
                self.epoch, self.position = self.epoch + 1, 0
            perm = self.permutation(self.epoch)
            stop = min(self.n, self.position + count - len(picks))
            picks += [(self.epoch, int(i)) for i in perm[self.position:stop]]
            self.position = stop
        return picks


def make_batch(objective: Objective, data: TokenData, seed: int, picks: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
    return objective.collate([objective.example(data, i, objective.rng_for(seed, e, i)) for e, i in picks])


def fixed_batches(objective: Objective, data: TokenData, seed: int, batch_size: int,
                  max_batches: int) -> list[dict[str, torch.Tensor]]:
    """The first `max_batches` batches of `data` in index order: the same at every evaluation."""
    n = min(objective.num_examples(data), batch_size * max_batches)
    return [make_batch(objective, data, seed, [(0, i) for i in range(start, min(n, start + batch_size))])
            for start in range(0, n, batch_size)]


def count_tokens(batch: dict[str, torch.Tensor]) -> int:
    mask = batch.get("attention_mask")
    if mask is not None and mask.dim() == 2:
        return int(mask.sum())
    return batch["input_ids"].numel()


def count_targets(batch: dict[str, torch.Tensor]) -> int:
    """Target tokens; for the pair objectives alone (`nsp`, `sop`: no token labels), the pairs."""
    if "labels" in batch:
        return int((batch["labels"] != -100).sum())
    return sum(int((v != -100).sum()) for k, v in batch.items() if k.endswith("_label"))
