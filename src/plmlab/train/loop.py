"""The Trainer: one straight-line loop that every kind of training runs through.

A *task* (train/task.py's protocol: pretraining's objective batches, a fine-tuning task, SFT,
DPO, distillation) supplies the examples behind a resumable cursor, the batches with their
target counts, the loss with its metrics, and the evaluation; the Trainer owns the step --
accumulation, precision, clipping, the NaN guard, OOM back-off, DDP/FSDP2 no-sync, the LR
schedule, signals, the metrics record, the eval and checkpoint cadence:

    while step < max_steps and no signal:
        micro-batches = task.batch(cursor.take(batch_size x world)) x grad_accum
        for each: task.loss under autocast -> loss share (targets / targets of the step) -> backward
        unscale, clip, all ranks agree the step is finite -> optimizer step (or skip it)
        record -> evaluate every eval_every -> metrics.jsonl, progress -> checkpoint every save_every
    checkpoint (the end, or the signal's step)

One optimizer step ("step", 1-based) is `grad_accum` micro-batches of `batch_size` examples.
The loss is the mean over every target of the step (micro-batch losses weighted by their
target counts, so objectives with a varying number of targets, like MLM, are exact).

A step whose loss or gradient norm is not finite is skipped: no update, the batch is
consumed, `skipped` is counted. `max_bad_steps` such steps in a row stop the run; weights
never become non-finite through a skipped step, and a checkpoint is never written from
non-finite weights. SIGINT / SIGTERM finish the current step, save a checkpoint and return;
a second signal interrupts at once (the save in progress is discarded, never half-written).

The options are frozen; what legitimately changes during a run lives in `TrainState`: the
data cursor, the counters, and the micro-batch geometry (which the OOM back-off halves).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable

import torch

from ..errors import PlmlabError
from .metrics import Progress
from .optim import recorded_lrs, set_lr
from .options import LoopOptions  # the loop's part of a run's options (declared with the others)
from .parallel import Dist, Parallelized
from .precision import Precision
from .signals import StopOnSignal
from .task import Batch, Metrics, Task, add_metrics, metric_values


@dataclass
class TrainState:
    """Everything about where a run is that is not a tensor (saved in trainer/state.json)."""

    step: int = 0
    epoch: int = 0  # data cursor: epoch ...
    position: int = 0  # ... and position in that epoch's permutation
    tokens: int = 0  # input tokens consumed
    skipped: int = 0  # non-finite steps skipped so far
    bad_streak: int = 0  # of them, in a row up to now
    elapsed_s: float = 0.0  # training time (without evaluation) over all sessions
    batch_size: int = 0  # micro-batch geometry now (the OOM back-off halves batch_size ...
    grad_accum: int = 0  # ... and doubles grad_accum: the same global batch)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data, where: str) -> "TrainState":
        """The state of a checkpoint's trainer/state.json, checked: one line for a forged one."""
        names = {f.name: f.type for f in fields(cls)}
        if not isinstance(data, dict) or not {"step", "epoch", "position"} <= set(data) or set(data) - set(names):
            raise PlmlabError(f"{where}: the trainer state is corrupt (expected the fields {', '.join(names)})")
        for name, value in data.items():
            number = (int, float) if name == "elapsed_s" else int
            if isinstance(value, bool) or not isinstance(value, number) or value < 0:
                raise PlmlabError(f"{where}: the trainer state is corrupt ({name} = {value!r}, "
                                  "expected a number >= 0)")
        return cls(**data)


# Called with every new Trainer, before it trains. Empty in real runs; the tests inject their
# faults through it (tests/faults.py registers itself; production code never does).
TRAINER_CREATED: list[Callable[["Trainer"], None]] = []


class Trainer:
    def __init__(self, task: Task, parallel: Parallelized, optimizer: torch.optim.Optimizer, precision: Precision,
                 lr_at: Callable[[int], float], options: LoopOptions, state: TrainState, *,
                 save: Callable[[], Path | None], log, progress: Progress, device: torch.device,
                 dist: Dist | None = None, mfu: Callable[[float], float | None] | None = None) -> None:
        self.task, self.model, self.optimizer, self.precision = task, parallel.module, optimizer, precision
        self.parallel, self.lr_at, self.options, self.state = parallel, lr_at, options, state
        self.save_checkpoint, self.log, self.progress, self.device = save, log, progress, device
        self.dist, self.mfu = dist or Dist(), mfu or (lambda tokens_per_s: None)
        self.order = task.make_order(state)  # the resumable data cursor
        self.params = [p for p in parallel.model.parameters() if p.requires_grad]
        self.saved_step = state.step  # a resumed run starts from a saved step
        self.last_eval: tuple[int, dict] | None = None  # (step, its evaluation record)
        self.signals = StopOnSignal(progress.write, lambda: self.state.step + 1)
        self.callbacks: list[Callable[["Trainer", dict], None]] = []  # after each step (tests: faults.py)
        for hook in TRAINER_CREATED:
            hook(self)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> int | None:
        """Train to max_steps; returns the signal number if a signal stopped the run. The
        metrics log and the progress display are closed on the way out, whatever happens."""
        o = self.options
        self.model.train()
        with contextlib.closing(self.log), contextlib.closing(self.progress), self.signals:
            while self.state.step < o.max_steps and not self._stopping():
                record = self.train_step()
                for callback in self.callbacks:
                    callback(self, record)
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
        return self.signals.received

    def _stopping(self) -> bool:
        """A signal stops the run; under torchrun every rank stops at the same step once any had one."""
        if self.dist.enabled and not self.dist.agree(self.signals.received is None):
            self.signals.received = self.signals.received or signal.SIGTERM
        return self.signals.received is not None

    def _due(self, every: int) -> bool:
        return every > 0 and self.state.step % every == 0

    def train_step(self) -> dict:
        """One step; with oom_backoff a CUDA out-of-memory error halves the micro-batch,
        doubles grad_accum (the same examples in the same order) and retries the step."""
        while True:
            cursor = (self.order.epoch, self.order.position)
            try:
                return self._one_step()
            except Exception as e:
                s = self.state
                if not (self.options.oom_backoff and is_oom(e) and s.batch_size > 1):
                    raise
                self.optimizer.zero_grad(set_to_none=True)
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                self.order.epoch, self.order.position = cursor
                s.batch_size, s.grad_accum = s.batch_size // 2, s.grad_accum * 2
                self.progress.write(f"plmlab: out of memory at step {s.step + 1}: retrying with "
                                    f"--batch-size {s.batch_size} --grad-accum {s.grad_accum} (same global batch)")

    def _one_step(self) -> dict:
        s, dist, start = self.state, self.dist, time.perf_counter()
        batches = [self.task.batch(dist.take(self.order.take(s.batch_size * dist.world))) for _ in range(s.grad_accum)]
        all_targets, all_tokens = map(int, dist.all_sum([sum(b.targets for b in batches),
                                                         sum(b.tokens for b in batches)], self.device))  # all ranks
        loss_sum, metrics = torch.zeros((), device=self.device), {}  # metrics: over the step's micro-batches
        for i, batch in enumerate(batches):
            if batch.targets == 0 and not dist.enabled:
                continue
            with self.parallel.no_sync(last=i == len(batches) - 1):  # DDP / FSDP: all-reduce on the last only
                # the batch's token-weighted share of the (global) step's loss
                loss, batch_metrics = self.micro_loss(batch.to(self.device), batch.targets, max(1, all_targets))
                add_metrics(metrics, batch_metrics if batch.targets else {})
                # DDP / FSDP average gradients over ranks; the loss is a sum of per-rank shares.
                self.precision.scale(loss * dist.world if dist.enabled else loss).backward()
            loss_sum += loss.detach()
        self.precision.unscale(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.options.clip or math.inf, foreach=True)
        loss_value, norm_value = float(dist.all_sum_tensor(loss_sum)), float(grad_norm)
        finite = dist.agree(math.isfinite(loss_value) and math.isfinite(norm_value))  # any rank's NaN skips
        lr = self.lr_at(s.step + 1)
        set_lr(self.optimizer, lr)
        self.precision.step(self.optimizer, finite)
        self.optimizer.zero_grad(set_to_none=True)
        s.bad_streak, s.skipped = (0, s.skipped) if finite else (s.bad_streak + 1, s.skipped + 1)
        seconds = time.perf_counter() - start
        s.step, s.tokens, s.elapsed_s = s.step + 1, s.tokens + all_tokens, s.elapsed_s + seconds
        s.epoch, s.position = self.order.epoch, self.order.position
        return self._record(lr, loss_value, norm_value, all_tokens / seconds, metrics, finite)

    def _record(self, lr: float, loss: float, grad_norm: float, tokens_per_s: float, metrics: Metrics,
                finite: bool) -> dict:
        s, mfu = self.state, self.mfu(tokens_per_s)
        return {"step": s.step, "loss": loss, **recorded_lrs(self.optimizer, lr), "tokens": s.tokens,
                "tokens_per_s": tokens_per_s, "grad_norm": grad_norm,
                "epoch": round(s.epoch + s.position / self.order.n, 4), "skipped": s.skipped,
                "elapsed_s": round(s.elapsed_s, 3), **metric_values(metrics),
                **({} if mfu is None else {"mfu": round(mfu, 4)}), **({} if finite else {"skipped_step": True})}

    def micro_loss(self, batch: Batch, n: int, total: int) -> tuple[torch.Tensor, Metrics]:
        """(this micro-batch's share n / total of the step's target-mean loss, its metrics)."""
        with self.precision.autocast():
            loss, metrics, output = self.task.loss(self.model, batch)
            if n == 0:  # every rank must run backward (DDP / FSDP collectives): a zero with a graph
                return output.logits.float().sum() * 0.0, metrics
            loss = loss * (n / total)
            if self.parallel.ddp is not None:
                # DDP (find_unused_parameters) expects every output it sees to reach the loss: tie the
                # outputs a task ignores (the pooler / pair head under plain MLM) in with weight 0.
                for extra in (getattr(output, "pooled", None), getattr(output, "pair_logits", None)):
                    if isinstance(extra, torch.Tensor) and extra.requires_grad:
                        loss = loss + extra.float().sum() * 0.0
        return loss, metrics

    def evaluate(self) -> dict:
        """The task's evaluation (val_loss, accuracies ...) of the current weights, on the plain
        model (what a task's evaluation may need of it, like its config, a wrapper hides)."""
        model = self.parallel.model
        model.eval()
        with torch.no_grad():
            record = self.task.evaluate(model, self.precision.autocast, self.device)
        self.model.train()
        if record:
            self.last_eval = (self.state.step, record)
        return record

    # ------------------------------------------------------------------ saving and stopping
    def save(self) -> Path | None:
        if not all(bool(torch.isfinite(p).all()) for p in self.params):
            raise PlmlabError(f"refusing to save step {self.state.step}: the weights are not finite; "
                              "the previous checkpoint is kept")
        path = self.save_checkpoint()
        self.saved_step = self.state.step
        return path

    def _stop_bad_steps(self, record: dict) -> None:
        raise PlmlabError(
            f"stopping at step {self.state.step}: {self.options.max_bad_steps} steps in a row had a non-finite "
            f"loss or gradient (loss {record['loss']}, grad norm {record['grad_norm']}); the weights were "
            f"not updated by them and the last checkpoint is kept; try a lower --lr or check the data")


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()
