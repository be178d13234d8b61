"""Learning-rate curves of `plmlab pretrain --schedule cosine|wsd|linear|constant` (train/optim.py)."""

from __future__ import annotations

import math

import pytest
import torch

from plmlab.train.optim import linear_lr_at, lr_at, schedule, set_lr


def curve(name: str, total: int = 100, **kwargs) -> list[float]:
    f = schedule(name, 1.0, 10, total, **kwargs)
    return [f(step) for step in range(1, total + 1)]


def test_every_schedule_warms_up_linearly_to_the_peak():
    for name in ("cosine", "linear", "wsd", "constant"):
        lrs = curve(name, min_lr=0.1)
        assert lrs[:10] == pytest.approx([s / 10 for s in range(1, 11)]), name
        assert lrs[9] == 1.0


def test_wsd_is_flat_then_decays_linearly_over_the_last_fraction():
    lrs = curve("wsd", min_lr=0.1, decay_fraction=0.2)  # decay over steps 81..100
    assert lrs[10:80] == [1.0] * 70
    assert lrs[80] == pytest.approx(1.0 - 0.9 / 20)  # step 81: one twentieth of the way down
    assert lrs[89] == pytest.approx(0.1 + 0.9 * 0.5)  # step 90: half way
    assert lrs[-1] == pytest.approx(0.1)  # the last update runs at min_lr
    assert all(a > b for a, b in zip(lrs[80:], lrs[81:]))


def test_wsd_one_minus_sqrt_decay():
    lrs = curve("wsd", min_lr=0.0, decay_fraction=0.5, decay_shape="1-sqrt")  # decay over steps 51..100
    assert lrs[49] == 1.0
    for step in (51, 60, 75, 100):
        assert lrs[step - 1] == pytest.approx(1.0 - math.sqrt((step - 50) / 50))
    # 1-sqrt falls faster early than the linear decay of the same length, and ends at the same place
    linear = curve("wsd", min_lr=0.0, decay_fraction=0.5)
    assert all(a < b for a, b in zip(lrs[50:99], linear[50:99])) and lrs[-1] == linear[-1] == 0.0


def test_wsd_decay_fraction_one_is_a_decay_from_step_one():
    lrs = schedule("wsd", 1.0, 0, 10, 0.0, decay_fraction=1.0)
    assert [lrs(s) for s in (1, 5, 10)] == pytest.approx([0.9, 0.5, 0.0])


def test_constant_holds_the_peak_past_the_horizon():
    assert curve("constant")[10:] == [1.0] * 90
    assert schedule("constant", 2e-3, 0, 5)(50) == 2e-3


def test_linear_decays_to_min_lr():
    lrs = curve("linear", min_lr=0.2)
    assert lrs[10] == 1.0  # step 11: the first of 90 decaying updates
    assert lrs[-1] == pytest.approx(0.2 + 0.8 / 90)
    assert all(a > b for a, b in zip(lrs[10:], lrs[11:]))


def test_linear_to_zero_is_berts_fine_tuning_schedule_unchanged():
    # The fine-tuning verbs call schedule("linear", lr, warmup, steps): the same floats as the
    # formula they always had, lr * min(step / warmup, (total - step + 1) / (total - warmup)).
    for step in range(1, 41):
        old = 3e-5 * min(step / 4, max(0.0, (40 - step + 1) / 36))
        assert schedule("linear", 3e-5, 4, 40)(step) == old == linear_lr_at(step, 3e-5, 4, 40)


def test_cosine_is_unchanged():
    f = schedule("cosine", 1.0, 10, 100, 0.1)
    assert [f(s) for s in (1, 10, 55, 100, 150)] == [lr_at(s, 1.0, 0.1, 10, 100) for s in (1, 10, 55, 100, 150)]
    assert f(55) == pytest.approx(0.55) and f(100) == 0.1


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="unknown schedule 'step'"):
        schedule("step", 1.0, 0, 10)


def test_set_lr_scales_groups_that_carry_an_lr_scale():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a]}, {"params": [b], "lr_scale": 10.0}], lr=1.0)
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 5.0]
