"""The scheduler: one worker thread owns the model; requests wait in a bounded queue and the
worker takes, each time, the oldest job plus every waiting job that can share its forward passes
(dynamic batching: one left-padded prefill, then every decode step over one KV cache for all
their rows; see batch.py). Other tasks (fill-mask, classify) run one job at a time.

Back-pressure: past `max_queue` waiting jobs, `submit` raises Busy (the app answers 429 with
Retry-After). A job whose client went away or whose deadline passed is `cancel`led: a waiting one
is dropped, a running one's rows stop at the next decode step, and a batch whose rows have all
stopped ends there, so its slot is free for the next batch.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from .metrics import Metrics


class Busy(Exception):
    """The queue is full."""


@dataclass
class Job:
    """A unit of work. `run(jobs)` is called on the worker thread with the batch this job heads
    (itself plus the jobs `joins` accepted); `emit(event)` is how results reach the client, and is
    called from the worker thread (the app hands events over to its event loop)."""

    run: Callable[[list["Job"]], None]
    emit: Callable[[tuple], None]
    deadline: float  # time.monotonic() after which the client has been answered 504
    payload: Any = None  # what run() needs: a batch.GenerationRequest, a callable ...
    rows: int = 1  # rows of the batch it takes
    key: Any = None  # jobs with equal keys (not None) may share a batch
    cancelled: threading.Event = field(default_factory=threading.Event)
    queued_at: float = field(default_factory=time.monotonic)

    def cancel(self) -> None:
        self.cancelled.set()

    @property
    def live(self) -> bool:
        return not self.cancelled.is_set() and time.monotonic() < self.deadline


class Engine:
    """Owns the worker thread. `max_batch` is the most rows one batch holds; `batch_wait` the
    seconds the worker waits for company once a job arrives (a few ms: the latency a request
    pays so that concurrent ones share its passes)."""

    def __init__(self, max_queue: int = 64, max_batch: int = 16, batch_wait: float = 0.005,
                 metrics: Metrics | None = None, fits: Callable[[list[Job]], bool] | None = None) -> None:
        self.max_queue, self.max_batch, self.batch_wait = max_queue, max_batch, batch_wait
        self.metrics = metrics or Metrics()
        self.fits = fits or (lambda jobs: True)  # can these jobs run as one batch (context)?
        self.waiting: collections.deque[Job] = collections.deque()
        self.cond = threading.Condition()
        self.running = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, name="plmlab-serve-worker", daemon=True)

    def start(self) -> "Engine":
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the worker (the app drains its requests first)."""
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.thread.join(timeout)

    def depth(self) -> int:
        """Jobs waiting, the ones whose clients left not counted (they are dropped here)."""
        with self.cond:
            self._drop_dead()
            return len(self.waiting)

    def submit(self, job: Job) -> None:
        with self.cond:
            self._drop_dead()  # cancelled jobs take no place in the queue, even before the worker looks
            if self.stopping:
                raise Busy("the server is shutting down")
            if len(self.waiting) >= self.max_queue:
                raise Busy(f"the queue is full ({self.max_queue} requests waiting)")
            self.waiting.append(job)
            self.metrics.queue_depth.set(len(self.waiting))
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if not batch:  # every waiting job died while the worker waited for company
                continue
            self.metrics.batch_rows.observe(sum(j.rows for j in batch))
            self.running = len(batch)
            try:
                batch[0].run(batch)
            except Exception as e:  # a bug, not a client mistake: every job of the batch learns of it
                for job in batch:
                    job.emit(("error", e))
            finally:
                self.running = 0

    def _next_batch(self) -> list[Job] | None:
        with self.cond:
            while True:
                self._drop_dead()
                if self.waiting:
                    break
                if self.stopping:
                    return None
                self.cond.wait(0.1)
            head = self.waiting[0]
        if head.key is not None and self.batch_wait > 0:
            time.sleep(self.batch_wait)  # let concurrent requests arrive and join
        with self.cond:
            self._drop_dead()
            if not self.waiting:
                return []
            head = self.waiting.popleft()
            batch = [head]
            if head.key is not None:
                for job in list(self.waiting):
                    if job.key == head.key and sum(j.rows for j in batch) + job.rows <= self.max_batch \
                            and self.fits(batch + [job]):
                        batch.append(job)
                        self.waiting.remove(job)
            self.metrics.queue_depth.set(len(self.waiting))
            return batch

    def _drop_dead(self) -> None:
        """Jobs cancelled (or past their deadline) while waiting never reach the model."""
        dead = [j for j in self.waiting if not j.live]
        for job in dead:
            self.waiting.remove(job)
            job.emit(("cancelled", None))
        if dead:
            self.metrics.queue_depth.set(len(self.waiting))
