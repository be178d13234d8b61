"""Fault injection for the trainer's tests: never active in real runs.

``PLMLAB_TEST_FAULT`` holds comma-separated faults; `install(trainer, saver)` reads it once at
set-up and wraps the Trainer's `micro_loss`, adds a step callback and wraps the checkpoint
writer (monkeypatching the instances: the loop itself has no fault branches).

    nan@A-B          the loss of steps A..B is NaN (``nan@A-`` : from step A on)
    save-abort@S     the process dies (os._exit(137), like SIGKILL) halfway through saving step S
    save-enospc@S    saving step S fails with OSError(ENOSPC) halfway through
    slow@SECONDS     every step sleeps this long (lets a test kill a run mid-way)
    sigint@S         the process sends itself SIGINT during step S (as a user's Ctrl-C would)
    oom@S            step S raises torch.cuda.OutOfMemoryError while its micro-batch is larger
                     than the one it first ran out of memory with, halved once (tests --oom-backoff)
"""

from __future__ import annotations

import errno
import os
import signal
import time

ENV = "PLMLAB_TEST_FAULT"


def parse(spec: str | None = None) -> dict[str, str]:
    out = {}
    for item in filter(None, (os.environ.get(ENV, "") if spec is None else spec).split(",")):
        name, _, arg = item.partition("@")
        out[name.strip()] = arg.strip()
    return out


def install(trainer, saver=None) -> None:
    """Wrap `trainer` (and the checkpoint `saver`) with the faults of PLMLAB_TEST_FAULT, if any."""
    faults = parse()
    if not faults:
        return
    if "nan" in faults or "oom" in faults:
        trainer.micro_loss = _faulty_loss(trainer, trainer.micro_loss, faults)
    if "slow" in faults or "sigint" in faults:
        trainer.callbacks.append(lambda t, record: _during_step(faults, record["step"]))
    if saver is not None and ("save-abort" in faults or "save-enospc" in faults):
        write_state = saver.write_state

        def faulty_write_state(folder, step, *args):  # between the model files and the trainer state
            _during_save(faults, step)
            write_state(folder, step, *args)

        saver.write_state = faulty_write_state


def _nan_at(spec: str, step: int) -> bool:
    first, _, last = spec.partition("-")
    return int(first) <= step and (not last or step <= int(last))


_oom_seen: dict[int, int] = {}  # step -> the micro-batch size it ran out of memory with


def _faulty_loss(trainer, micro_loss, faults: dict[str, str]):
    def wrapped(batch, n, total):
        loss, output = micro_loss(batch, n, total)
        step = trainer.state.step + 1
        if "nan" in faults and _nan_at(faults["nan"], step):
            loss = loss * float("nan")
        if "oom" in faults and int(faults["oom"]) == step:
            # step S runs out of memory once at its first micro-batch size (any later halving fits)
            first = _oom_seen.setdefault(step, trainer.state.batch_size)
            if trainer.state.batch_size == first:
                import torch

                raise torch.cuda.OutOfMemoryError(
                    f"CUDA out of memory (test fault oom@{step}, micro-batch {first})")
        return loss, output
    return wrapped


def _during_step(faults: dict[str, str], step: int) -> None:
    if faults.get("slow"):
        time.sleep(float(faults["slow"]))
    if faults.get("sigint") == str(step):
        signal.raise_signal(signal.SIGINT)


def _during_save(faults: dict[str, str], step: int) -> None:
    if faults.get("save-abort") == str(step):
        os._exit(137)
    if faults.get("save-enospc") == str(step):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
