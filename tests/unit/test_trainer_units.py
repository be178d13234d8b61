"""The one Trainer's pieces without a whole run: frozen options, the fine-tuning schedule,
the FSDP2 mixed-precision policy, the state check, and faults installed from outside the loop."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.train import PretrainOptions
from plmlab.train.loop import LoopOptions, Trainer, TrainState
from plmlab.train.metrics import Progress
from plmlab.train.optim import linear_lr_at, lr_at, schedule
from plmlab.train.parallel import Dist, Parallelized
from plmlab.train.precision import Precision


def test_options_are_frozen():
    o = PretrainOptions(out="x", preset="gpt-tiny").resolved()
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.batch_size = 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        LoopOptions(max_steps=3).max_steps = 4


def test_linear_schedule_warms_up_then_decays_to_its_last_step():
    lrs = [linear_lr_at(s, 1.0, 2, 10) for s in range(1, 11)]
    assert lrs[:2] == [0.5, 1.0] and lrs[2] == 1.0  # warmup, then the decay starts from lr
    assert lrs[-1] == pytest.approx(1 / 8) and all(a > b for a, b in zip(lrs[2:], lrs[3:]))
    assert linear_lr_at(1, 1.0, 0, 4) == 1.0 and linear_lr_at(4, 1.0, 0, 4) == 0.25
    assert schedule("cosine", 1.0, 2, 10, 0.1)(7) == lr_at(7, 1.0, 0.1, 2, 10)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule("step", 1.0, 0, 10)


def test_fsdp2_gets_the_mixed_precision_policy(monkeypatch):
    import torch.distributed.fsdp as fsdp

    from plmlab.train.parallel import parallelize_fsdp

    calls = []
    monkeypatch.setattr(fsdp, "fully_shard", lambda module, **kw: calls.append((module, kw)))
    model = plmlab.build_model("gpt-tiny")
    parallelize_fsdp(model, torch.bfloat16)
    assert len(calls) == model.config.n_layers + 1 and calls[-1][0] is model  # every block, then the root
    policy = calls[-1][1]["mp_policy"]
    assert policy.param_dtype == torch.bfloat16 and policy.reduce_dtype == torch.float32
    calls.clear()
    parallelize_fsdp(model, None)  # fp32: no policy
    assert all("mp_policy" not in kw for _, kw in calls)


@pytest.mark.parametrize("state", [None, [], {"step": 1}, {"step": -1, "epoch": 0, "position": 0},
                                   {"step": 1, "epoch": 0, "position": 0, "bogus": 1},
                                   {"step": True, "epoch": 0, "position": 0},
                                   {"step": 1.5, "epoch": 0, "position": 0}])
def test_a_forged_train_state_is_refused(state):
    with pytest.raises(PlmlabError, match="trainer state is corrupt"):
        TrainState.from_dict(state, "ckpt")
    assert TrainState.from_dict({"step": 3, "epoch": 1, "position": 2, "elapsed_s": 0.5}, "ckpt").step == 3


class _Task:
    def make_order(self, state):
        from plmlab.train.data import ExampleOrder

        return ExampleOrder(4, 0)


def _trainer():
    model = torch.nn.Linear(2, 2)
    return Trainer(_Task(), Parallelized(model, model), torch.optim.SGD(model.parameters(), lr=0.1),
                   Precision("fp32", torch.device("cpu")), lambda step: 0.1, LoopOptions(max_steps=1), TrainState(),
                   save=lambda: None, log=None, progress=Progress("none", 0, 1), device=torch.device("cpu"), dist=Dist())


def test_faults_are_installed_on_the_instance_not_branched_in_the_loop(monkeypatch):
    import faults  # tests/faults.py, registered with the Trainer's creation hook by conftest

    monkeypatch.delenv(faults.ENV, raising=False)
    plain = _trainer()
    assert plain.micro_loss.__func__ is Trainer.micro_loss and not plain.callbacks
    monkeypatch.setenv(faults.ENV, "nan@2-3,slow@0")
    faulty = _trainer()
    assert "micro_loss" in vars(faulty) and len(faulty.callbacks) == 1


def test_plmlab_itself_registers_no_trainer_hook():
    code = "import plmlab.cli, plmlab.train.loop as loop; print(len(loop.TRAINER_CREATED))"
    env = {k: v for k, v in os.environ.items() if k != "PLMLAB_TEST_FAULT"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("field, value", [("batch_size", "4"), ("lr", "fast"), ("compile", 1), ("max_steps", 2.5),
                                          ("corpus", "one.txt")])
def test_option_types_are_checked(field, value):
    with pytest.raises(PlmlabError, match=f"--{field.replace('_', '-')} must be a"):
        PretrainOptions(out="x", preset="gpt-tiny", **{field: value}).resolved()
