"""Fine-tuning's batch order, ported from a token order over unit lengths (the old EpochBatches)
to `BatchOrder` with a count cut and fine-tuning's shuffle: the examples drawn per step, in
order, are the ones it drew -- plain, joined for DDP, and halved by the OOM back-off."""

from __future__ import annotations

import numpy as np

from plmlab.train.batching import BatchOrder, TokenBatchOrder, count_cut
from plmlab.train.data import finetune_shuffle, pretrain_shuffle


def draws(order, counts: list[int]) -> list[list[tuple[int, int]]]:
    return [order.take(c) for c in counts]


def test_count_cut_draws_what_a_token_order_over_unit_lengths_drew():
    n, batch_size, seed = 23, 4, 5
    counts = [4] * 14 + [8] * 5 + [2] * 6 + [4] * 3  # plain, DDP's joined batches, the back-off's halves
    old = TokenBatchOrder(np.ones(n, dtype=np.int64), batch_size, seed, batch_size=batch_size)
    new = BatchOrder(n, count_cut(batch_size), seed, batch_size=batch_size, shuffle=pretrain_shuffle)
    assert draws(new, counts) == draws(old, counts)


def test_finetune_order_is_each_epochs_seeded_permutation_in_batches():
    n, batch_size, seed = 10, 4, 3
    order = BatchOrder(n, count_cut(batch_size), seed, batch_size=batch_size, shuffle=finetune_shuffle)
    expected = []
    for epoch in range(3):
        perm = np.random.default_rng([seed, epoch + 1]).permutation(n)  # fine-tuning's stream, epochs from 1
        expected += [[(epoch, int(i)) for i in perm[s:s + batch_size]] for s in range(0, n, batch_size)]
    assert [order.take(batch_size) for _ in range(9)] == expected  # 4, 4, 2 per epoch: none straddles two
    resumed = BatchOrder(n, count_cut(batch_size), seed, 1, 8, batch_size=batch_size, shuffle=finetune_shuffle)
    assert resumed.take(batch_size) == expected[5]
