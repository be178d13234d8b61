"""`build_trainer`: the one place a Trainer is assembled -- pretraining, every fine-tuning stage
(finetune, sft, dpo, distill) and the studies all call it, so what a run records (its options
in summary.json and in every checkpoint) is what it ran.

Each stage's options produce a `RunSpec` (`options.run_spec()`: an optimizer, a schedule, the
loop's and the parallel options, each a small dataclass of train/options.py); the builder turns
it into objects, in this order, before
the loop (as torchtitan's trainer does):

    precision -> parallelize (DDP / FSDP2: collectives, every rank) -> optimizer (after sharding)
      -> schedule -> restore (optimizer, loop state, RNGs: last, after every draw of the set-up)
      -> checkpointer -> metrics log (+ TensorBoard) -> progress -> Trainer

A run that keeps nothing (a study's arm) passes no `Saving`: no checkpoints, and its records go
to the `log` it gives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..errors import PlmlabError, warn
from .flops import MFU, default_peak_flops
from .loop import Trainer, TrainState
from .metrics import METRICS, MetricsLog, NoLog, Progress
from .muon import MuonAdamW
from .optim import make_optimizer, schedule
from .options import OptimizerSpec, RunSpec, ScheduleSpec
from .parallel import Dist, parallelize
from .precision import Precision
from .rundir import RunDir, clear
from .saving import Checkpointer, restore_training
from .status import Status
from .tensorboard import TensorBoardLogger  # imports tensorboard itself only when asked to log


@dataclass
class Saving:
    """Where a run keeps what it does: checkpoints and metrics.jsonl under `rundir` (rank 0 writes)."""

    rundir: RunDir
    tokenizer: Any  # saved with every checkpoint
    info: Callable[[TrainState], dict]  # what a checkpoint records beyond the loop's state (the options ...)
    rebuild: Callable[[], torch.nn.Module]  # a fresh CPU model shaped like the trained one (FSDP2 gathers into it)
    keep_last: int  # checkpoints kept; 0: all
    resume: tuple[Path, dict] | None = None  # (the checkpoint, its trainer info) to continue from
    old_entries: list[Path] = field(default_factory=list)  # an earlier run's files, cleared once the run is built
    model_format: str = "auto"  # save_pretrained's: "auto" (HF where it can) or "plmlab"
    tensorboard: bool = False  # mirror the metrics to rundir/tensorboard


def build_optimizer(model: torch.nn.Module, spec: OptimizerSpec):
    """AdamW (decay on matrices only), or Muon for the blocks' matrices + AdamW for the rest."""
    if spec.name == "muon":
        return MuonAdamW(model, spec.lr, spec.muon_lr, spec.weight_decay, spec.betas, ns_dtype=spec.muon_dtype)
    return make_optimizer(model, spec.lr, spec.weight_decay, spec.betas)


def build_schedule(spec: ScheduleSpec) -> Callable[[int], float]:
    """step (1-based) -> learning rate."""
    return schedule(spec.name, spec.lr, spec.warmup, spec.total, spec.min_lr, spec.decay_fraction, spec.decay_shape)


def build_trainer(task, model: torch.nn.Module, run: RunSpec, device: torch.device, dist: Dist,
                  saving: Saving | None = None, log=None) -> Trainer:
    """The Trainer of `task` on `model` (on `device`; a checkpoint's weights already in it)."""
    main = dist.is_main  # only rank 0 logs and writes
    precision = Precision(run.parallel.precision, device, warn=warn if main else None)
    mp_dtype = precision.dtype if run.parallel.strategy == "fsdp" else None  # FSDP2 gathers parameters in it
    parallel = parallelize(model, run.parallel, dist, device, mp_dtype)
    optimizer = build_optimizer(model, run.optimizer)  # over the sharded parameters under FSDP2
    state = TrainState(batch_size=run.batch_size, grad_accum=run.grad_accum)
    if saving is not None and saving.resume is not None:
        state = restore_training(*saving.resume, parallel, optimizer, precision)
        # The run's geometry now (the OOM back-off's, rescaled to this world size by the set-up):
        # per-rank values, which the checkpoint's state may not be.
        state.batch_size, state.grad_accum = run.batch_size, run.grad_accum
    save = (lambda: None) if saving is None else Checkpointer(
        saving.rundir.checkpoints, parallel, optimizer, precision, state, saving.tokenizer,
        lambda: saving.info(state), saving.keep_last, dist, rebuild=saving.rebuild, model_format=saving.model_format)
    if log is None:
        log = _metrics_log(saving, state.step) if main and saving is not None else NoLog()
    if isinstance(optimizer, MuonAdamW):  # which dtype Newton-Schulz runs in, and why (train/muon.py)
        Status(main and run.progress != "none").say(optimizer.describe())
    peak = run.peak_flops or default_peak_flops(device, precision.dtype is not None)
    return Trainer(task, parallel, optimizer, precision, build_schedule(run.schedule), run.loop, state, save=save,
                   log=log, progress=Progress(run.progress if main else "none", state.step, run.loop.max_steps),
                   device=device, dist=dist, mfu=MFU(run.flops_per_token, peak, dist.world))


def _metrics_log(saving: Saving, step: int) -> MetricsLog:
    """metrics.jsonl (cut back to the checkpoint's step on resume), the earlier run's files cleared first."""
    clear(saving.old_entries)
    mirror = _tensorboard(saving.rundir.out) if saving.tensorboard else None
    return MetricsLog(saving.rundir.out / METRICS, keep_until=step if saving.resume is not None else None,
                      mirror=mirror)


def _tensorboard(out: Path):
    tb = TensorBoardLogger(out / "tensorboard")
    if not tb.available:
        raise PlmlabError(tb.reason)
    return tb
