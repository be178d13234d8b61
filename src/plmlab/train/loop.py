"""The training loop: accumulate, clip, guard against NaN/Inf, evaluate, log, checkpoint.

One optimizer step ("step", 1-based) is `grad_accum` micro-batches of `batch_size` sequences.
The loss is the mean over every target token of the step (micro-batch losses weighted by
their target counts, so objectives with a varying number of targets, like MLM, are exact).

A step whose loss or gradient norm is not finite is skipped: no update, the batch is
consumed, `skipped` is counted. `max_bad_steps` such steps in a row stop the run; weights
never become non-finite through a skipped step, and a checkpoint is never written from
non-finite weights. SIGINT / SIGTERM finish the current step, save a checkpoint and return;
a second signal interrupts at once (the save in progress is discarded, never half-written).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import torch

from ..data.shards import TokenData
from ..errors import PlmlabError
from ..objectives import Objective
from . import faults
from .batching import make_order
from .objective_metrics import Averager, batch_metrics
from .data import count_targets, count_tokens, make_batch
from .metrics import MetricsLog, Progress
from .optim import lr_at, set_lr
from .options import PretrainOptions
from .scale import ScaleContext, is_oom


@dataclass
class TrainState:
    """Everything about where a run is that is not a tensor (saved in trainer_state.json)."""

    step: int = 0
    epoch: int = 0  # data cursor: epoch ...
    position: int = 0  # ... and position in that epoch's permutation
    tokens: int = 0  # input tokens consumed
    skipped: int = 0  # non-finite steps skipped so far
    bad_streak: int = 0  # of them, in a row up to now
    elapsed_s: float = 0.0  # training time (without evaluation) over all sessions

    def to_dict(self) -> dict:
        return asdict(self)


class Trainer:
    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, objective: Objective,
                 train: TokenData, val_batches: list[dict], options: PretrainOptions, state: TrainState,
                 save: Callable[[], Path], log: MetricsLog, progress: Progress, device: torch.device,
                 scale: ScaleContext | None = None) -> None:
        self.model, self.optimizer, self.objective, self.train = model, optimizer, objective, train
        self.val_batches, self.options, self.state = val_batches, options, state
        self.save_checkpoint, self.log, self.progress, self.device = save, log, progress, device
        self.order = make_order(objective, train, options, state)  # by count, or by tokens (variable_length)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.saved_step = state.step  # a resumed run starts from a saved step
        self.last_eval: tuple[int, float] | None = None
        self.last_accuracies: dict[str, float] = {}  # val_mlm_accuracy, ... of the last evaluation
        self.stop_signal: int | None = None
        # ranks, precision, OOM back-off, MFU (train/scale.py)
        self.scale = scale if scale is not None else ScaleContext.single(options, device)
        self.autocast = self.scale.precision.autocast

    # ------------------------------------------------------------------ the loop
    def fit(self) -> int | None:
        """Train to max_steps; returns the signal number if a signal stopped the run."""
        o = self.options
        self.model.train()
        with self._catch_signals():
            while self.state.step < o.max_steps and not self._stopping():
                record = self.train_step()
                if self._due(o.eval_every) or self.state.step == o.max_steps:
                    record.update(self.evaluate())
                self.log.write(record)
                self.progress.update(record)
                if self.state.bad_streak >= o.max_bad_steps:
                    self._stop_bad_steps(record)
                if self._due(o.save_every):
                    self.save()
            if self.state.step != self.saved_step:  # the end, or a signal
                self.save()
        return self.stop_signal

    def _stopping(self) -> bool:
        """A signal stops the run; under torchrun every rank stops at the same step once any had one."""
        if self.scale.dist.enabled and not self.scale.dist.agree(self.stop_signal is None):
            self.stop_signal = self.stop_signal or signal.SIGTERM
        return self.stop_signal is not None

    def _due(self, every: int) -> bool:
        return every > 0 and self.state.step % every == 0

    def train_step(self) -> dict:
        """One step; with --oom-backoff a CUDA out-of-memory error halves the micro-batch,
        doubles grad_accum (the same examples in the same order) and retries the step."""
        while True:
            cursor = (self.order.epoch, self.order.position)
            try:
                return self._one_step()
            except Exception as e:
                o = self.options
                if not (self.scale.oom_backoff and is_oom(e) and o.batch_size > 1):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.order.epoch, self.order.position = cursor
                o.batch_size, o.grad_accum = o.batch_size // 2, o.grad_accum * 2
                self.progress.write(f"plmlab: out of memory at step {self.state.step + 1}: retrying with "
                                    f"--batch-size {o.batch_size} --grad-accum {o.grad_accum} (same global batch)")

    def _one_step(self) -> dict:
        o, s, sc = self.options, self.state, self.scale
        start = time.perf_counter()
        step = s.step + 1
        batches = [make_batch(self.objective, self.train, o.seed, sc.take(self.order, o.batch_size))
                   for _ in range(o.grad_accum)]
        targets = [count_targets(b) for b in batches]
        all_targets, all_tokens = sc.global_counts(sum(targets), sum(count_tokens(b) for b in batches))
        total = max(1, all_targets)
        loss_sum = torch.zeros((), device=self.device)
        accuracies = Averager()  # the objective's accuracies over the step's micro-batches
        for i, (batch, n) in enumerate(zip(batches, targets)):
            if n == 0 and not sc.dist.enabled:
                continue
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with sc.no_sync(last=i == len(batches) - 1):  # DDP / FSDP: all-reduce on the last only
                with self.autocast():
                    output = self.model(**batch)
                    loss = sc.micro_loss(output, n, total)  # token-weighted mean over the (global) step
                if n:
                    accuracies.add(batch_metrics(self.objective, batch, output))
                if faults.nan_loss(step):
                    loss = loss * float("nan")
                faults.oom(step, o.batch_size)
                sc.backward(loss)
            loss_sum += loss.detach()
        sc.unscale(self.optimizer)
        max_norm = o.clip if o.clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=True)
        loss_value, norm_value = float(sc.reduce_loss(loss_sum)), float(grad_norm)
        lr = lr_at(step, o.lr, o.min_lr, o.warmup, o.max_steps)
        finite = sc.finite(math.isfinite(loss_value) and math.isfinite(norm_value))  # agreed by all ranks
        set_lr(self.optimizer, lr)
        sc.step(self.optimizer, finite)
        if finite:
            s.bad_streak = 0
        else:
            s.skipped += 1
            s.bad_streak += 1
        self.optimizer.zero_grad(set_to_none=True)
        faults.during_step(step)
        tokens = all_tokens  # over all ranks
        seconds = time.perf_counter() - start
        s.step, s.tokens, s.elapsed_s = step, s.tokens + tokens, s.elapsed_s + seconds
        s.epoch, s.position = self.order.epoch, self.order.position
        record = {"step": step, "loss": loss_value, "lr": lr, "tokens": s.tokens,
                  "tokens_per_s": tokens / seconds, "grad_norm": norm_value,
                  "epoch": round(s.epoch + s.position / self.order.n, 4), "skipped": s.skipped,
                  "elapsed_s": round(s.elapsed_s, 3), **accuracies.result()}
        mfu = sc.mfu(tokens / seconds)
        if mfu is not None:
            record["mfu"] = round(mfu, 4)
        if not finite:
            record["skipped_step"] = True
        return record

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Mean loss over every target token of the fixed validation batches."""
        if not self.val_batches:
            return {}
        self.model.eval()
        total, count = torch.zeros((), dtype=torch.float64, device=self.device), 0
        accuracies = Averager()
        for batch in self.val_batches:
            n = count_targets(batch)
            if n == 0:
                continue
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            with self.autocast():
                output = self.model(**batch)
                total += output.loss.double() * n
            accuracies.add(batch_metrics(self.objective, batch, output))
            count += n
        self.model.train()
        loss = float(total) / max(1, count)
        self.last_eval = (self.state.step, loss)
        self.last_accuracies = accuracies.result("val_")
        return {"val_loss": loss, "val_ppl": math.exp(min(loss, 700.0)), **self.last_accuracies}

    # ------------------------------------------------------------------ saving and stopping
    def save(self) -> Path:
        if not all(bool(torch.isfinite(p).all()) for p in self.params):
            raise PlmlabError(f"refusing to save step {self.state.step}: the weights are not finite; "
                              "the previous checkpoint is kept")
        path = self.save_checkpoint()
        self.saved_step = self.state.step
        return path

    def _stop_bad_steps(self, record: dict) -> None:
        o = self.options
        raise PlmlabError(
            f"stopping at step {self.state.step}: {o.max_bad_steps} steps in a row had a non-finite "
            f"loss or gradient (loss {record['loss']}, grad norm {record['grad_norm']}); the weights were "
            f"not updated by them and the last checkpoint is kept; try a lower --lr or check the data")

    @contextlib.contextmanager
    def _catch_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield  # signal handlers can only be installed from the main thread
            return

        def handler(signum, frame):
            if self.stop_signal is not None:
                raise KeyboardInterrupt  # a second signal: stop now
            self.stop_signal = signum
            self.progress.write(f"plmlab: {signal.Signals(signum).name}: finishing step "
                                f"{self.state.step + 1}, then saving a checkpoint (again to stop at once)")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)
