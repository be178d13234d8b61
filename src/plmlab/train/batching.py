"""Which examples make each training batch: a fixed count, or whole batches cut from each epoch's
permutation -- by a budget of tokens (variable-length objectives) or by a count (fine-tuning).

RoBERTa's DOC-SENTENCES and SENTENCE-PAIR formats give examples of very different lengths; their
batches hold about `batch_size * seq_len` tokens each instead of `batch_size` examples (Liu et
al. 2019, section 4.2). Epoch e's permutation is cut into consecutive batches by a `cut`
(`pairs.batches_by_tokens`' sizes, or `batch_size` examples each, an epoch's last batch
smaller); a batch never straddles two epochs. The cut is a pure function of (seed, epoch, the
data), and the cursor (epoch, position) always sits on a batch boundary, so a resumed run
continues with exactly the batch it would have seen.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import PlmlabError
from ..objectives.pairs import batches_by_tokens
from .data import ExampleOrder, pretrain_shuffle


class BatchOrder(ExampleOrder):
    """`take()` returns the next whole batch of `cut(permutation)`'s; `take(count)` with
    `batch_size` given returns `count // batch_size` (at least 1) such batches joined: under DDP
    a global micro-batch of `batch_size x world` examples becomes `world` batches, which the
    ranks then share (examples rank::world), each getting about one batch."""

    def __init__(self, n: int, cut: Callable[[np.ndarray], list[int]], seed: int, epoch: int = 0, position: int = 0,
                 batch_size: int | None = None, shuffle=pretrain_shuffle) -> None:
        super().__init__(n, seed, epoch, position, shuffle)
        self.cut, self.batch_size = cut, batch_size
        self._cut_epoch, self._starts = -1, {}
        self._pending = None  # the OOM back-off's parts of one batch still to take

    def batch_starts(self, epoch: int) -> dict[int, int]:
        """Position in epoch's permutation -> the number of examples of the batch starting there."""
        if epoch != self._cut_epoch:
            sizes = np.asarray(self.cut(self.permutation(epoch)), dtype=np.int64)
            starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
            self._starts = dict(zip(starts.tolist(), sizes.tolist()))
            self._cut_epoch = epoch
        return self._starts

    def take(self, count: int | None = None) -> list[tuple[int, int]]:
        if count and self.batch_size and count < self.batch_size:
            return self._take_part(-(-self.batch_size // count))
        k = max(1, count // self.batch_size) if count and self.batch_size else 1
        return [pick for _ in range(k) for pick in self.take_one()]

    def _take_part(self, parts: int) -> list[tuple[int, int]]:
        """1/parts of a batch (OOM back-off: the micro-batch halved, grad_accum doubled, so
        a step still consumes whole batches and a checkpoint's cursor stays on a boundary).
        A cursor moved from outside (the back-off's retry rewinds it) drops the pending parts."""
        pending = self._pending
        if pending is None or pending[0] != (self.epoch, self.position) or not pending[1]:
            batch = self.take_one()
            pieces = [batch[i * len(batch) // parts: (i + 1) * len(batch) // parts] for i in range(parts)]
            pending = ((self.epoch, self.position), [p for p in pieces if p])
        part = pending[1].pop(0)
        self._pending = pending if pending[1] else None
        return part

    def take_one(self) -> list[tuple[int, int]]:
        if self.position == self.n:
            self.epoch, self.position = self.epoch + 1, 0
        size = self.batch_starts(self.epoch).get(self.position)
        if size is None:  # a cursor off the batch boundaries: not written by this order
            raise PlmlabError(f"data cursor (epoch {self.epoch}, position {self.position}) is not at a "
                              "batch boundary of this run's batches; the checkpoint does not match")
        perm = self.permutation(self.epoch)
        picks = [(self.epoch, int(i)) for i in perm[self.position: self.position + size]]
        self.position += size
        return picks


class TokenBatchOrder(BatchOrder):
    """Batches of about `tokens_per_batch` tokens (`lengths`: each example's)."""

    def __init__(self, lengths: np.ndarray, tokens_per_batch: int, seed: int, epoch: int = 0,
                 position: int = 0, batch_size: int | None = None) -> None:
        lengths, budget = np.asarray(lengths, dtype=np.int64), int(tokens_per_batch)
        super().__init__(len(lengths), lambda perm: [len(b) for b in batches_by_tokens(perm, lengths, budget)],
                         seed, epoch, position, batch_size)


def count_cut(batch_size: int) -> Callable[[np.ndarray], list[int]]:
    """Batches of `batch_size` examples, an epoch's last one smaller."""
    return lambda perm: [min(batch_size, len(perm) - s) for s in range(0, len(perm), batch_size)]


def make_order(objective, data, options, state) -> ExampleOrder:
    """The run's batch order: by tokens when the objective's examples vary in length."""
    n = objective.num_examples(data)
    if getattr(objective, "variable_length", False) and hasattr(objective, "example_lengths"):
        lengths = objective.example_lengths(data)
        return TokenBatchOrder(lengths, options.batch_size * options.seq_len, options.seed, state.epoch, state.position,
                               batch_size=options.batch_size)
    return ExampleOrder(n, options.seed, state.epoch, state.position)
