"""metrics.jsonl and the progress display.

metrics.jsonl holds one JSON object per optimizer step, in order:

    {"step": 12, "loss": 6.91, "lr": 0.0002, "tokens": 24576, "tokens_per_s": 3310.5,
     "grad_norm": 1.7, "epoch": 0, "skipped": 0, "elapsed_s": 7.4}

plus `val_loss` / `val_ppl` on the steps that evaluate, and the objective's accuracies
(`mlm_accuracy`, `nsp_accuracy` / `sop_accuracy`, `token_accuracy`; `val_*` at evaluations,
count-weighted over the batches: train/task.py `Mean`). A skipped (non-finite) step has
`"skipped_step": true` and its loss as a string ("nan", "inf"), since JSON has no NaN. On resume
the records after the checkpoint's step are dropped, so the file always reads as one run.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

from tqdm import tqdm

METRICS = "metrics.jsonl"


def _json_number(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


class MetricsLog:
    """Appends records to metrics.jsonl, flushed line by line (a killed run loses nothing), and
    hands each record to `mirror` too (a TensorBoardLogger) when one is given."""

    def __init__(self, path: Path, keep_until: int | None = None, mirror=None) -> None:
        self.path, self.mirror = path, mirror
        if keep_until is None:
            path.unlink(missing_ok=True)
        else:
            self._truncate(keep_until)
        self.file = open(path, "a", encoding="utf-8")

    def _truncate(self, step: int) -> None:
        """Keep the well-formed records up to `step` (a kill may have cut the last line short)."""
        kept = []
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and record.get("step", math.inf) <= step:
                    kept.append(line)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        os.replace(tmp, self.path)

    def write(self, record: dict) -> None:
        record = {k: _json_number(v) if isinstance(v, float) else v for k, v in record.items()}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.mirror is not None:
            self.mirror.log(record, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.mirror is not None:
            self.mirror.close()


def read_metrics(path: str | Path) -> list[dict]:
    """The records of a metrics.jsonl (for tests, benchmarks and plotting)."""
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


class Progress:
    """A tqdm bar on a terminal (it shows the ETA). Otherwise (CI logs, `make pretrain | tee`) plain
    lines: every `every` steps, at evaluations, at the end and at least every PLAIN_EVERY_S
    seconds, and once, after ESTIMATE_AFTER_STEPS steps (or ESTIMATE_AFTER_S seconds), the time a
    step takes and the run's time at that rate."""

    PLAIN_EVERY_S = 10.0
    ESTIMATE_AFTER_STEPS, ESTIMATE_AFTER_S = 3, 5.0

    def __init__(self, mode: str, start: int, total: int, stream=None, clock=time.perf_counter) -> None:
        self.stream, self.clock = stream or sys.stderr, clock
        if mode == "auto":
            mode = "bar" if self.stream.isatty() else "plain"
        self.mode, self.total = mode, total
        self.every = max(1, min(100, total // 20))
        self.bar = None
        if mode == "bar":
            self.bar = tqdm(total=total, initial=start, unit="step", file=self.stream, dynamic_ncols=True)
        self.start_time, self.start_step, self.tokens_per_s = clock(), start, 0.0
        self.printed = self.start_time  # when the last plain line was written
        self.first_step: float | None = None  # when the first step of this session ended
        self.estimated = False

    def update(self, record: dict) -> None:
        step, now = record["step"], self.clock()
        # An exponential average is steadier than a single step's rate.
        rate = record.get("tokens_per_s", 0.0)
        self.tokens_per_s = rate if not self.tokens_per_s else 0.9 * self.tokens_per_s + 0.1 * rate
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}" if isinstance(record["loss"], float) else record["loss"],
                                 tok_s=f"{self.tokens_per_s:,.0f}", refresh=False,
                                 **({"mfu": f"{record['mfu']:.1%}"} if "mfu" in record else {}))
            self.bar.update(step - self.bar.n)
        elif self.mode == "plain":
            if self.first_step is None:
                self.first_step = now
            if (step % self.every == 0 or step == self.total or "val_loss" in record
                    or now - self.printed >= self.PLAIN_EVERY_S):
                self._plain_line(record, now)
            if not self.estimated and step < self.total and (step - self.start_step >= self.ESTIMATE_AFTER_STEPS
                                                              or now - self.start_time >= self.ESTIMATE_AFTER_S):
                self._estimate(step, now)

    def _plain_line(self, record: dict, now: float) -> None:
        step = record["step"]
        eta = (now - self.start_time) / max(1, step - self.start_step) * (self.total - step)
        loss = record["loss"] if isinstance(record["loss"], str) else f"{record['loss']:.4f}"
        val = f" val_loss {record['val_loss']:.4f} val_ppl {record['val_ppl']:.1f}" if "val_loss" in record else ""
        val += accuracy_text(record)
        mfu = f" mfu {record['mfu']:.1%}" if "mfu" in record else ""
        self.write(f"step {step}/{self.total} loss {loss} lr {record['lr']:.2e} "
                   f"{self.tokens_per_s:,.0f} tok/s{mfu} eta {_clock(eta)}{val}")
        self.printed = now

    def _estimate(self, step: int, now: float) -> None:
        """The step time, from the steps after this session's first (which also warms up), when
        there are some; the run's time at that rate, evaluations and checkpoints not included."""
        done = step - self.start_step
        took = (now - self.first_step) / (done - 1) if done > 1 else now - self.start_time
        steps = self.total - self.start_step
        self.write(f"step time {took:.2f} s: about {_clock(took * steps)} for {steps} steps "
                   "(plus evaluations and checkpoints)")
        self.estimated = True

    def write(self, message: str) -> None:
        if self.bar is not None:
            self.bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


class NoLog:
    """The metrics log of ranks other than 0."""

    def write(self, record: dict) -> None:
        pass

    def close(self) -> None:
        pass


def accuracy_text(record: dict, prefix: str = "val_") -> str:
    """' val_mlm_acc 0.312 val_nsp_acc 0.55' for a progress line ('' when there are none)."""
    return "".join(f" {key.removesuffix('uracy')} {value:.3f}" for key, value in record.items()
                   if key.startswith(prefix) and key.endswith("_accuracy") and isinstance(value, float))
