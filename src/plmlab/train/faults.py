"""Fault injection for the trainer's tests: never set in real runs.

``PLMLAB_TEST_FAULT`` holds comma-separated faults:

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


def _faults() -> dict[str, str]:
    out = {}
    for item in filter(None, os.environ.get(ENV, "").split(",")):
        name, _, arg = item.partition("@")
        out[name.strip()] = arg.strip()
    return out


def nan_loss(step: int) -> bool:
    spec = _faults().get("nan")
    if spec is None:
        return False
    first, _, last = spec.partition("-")
    return int(first) <= step and (not last or step <= int(last))


def during_step(step: int) -> None:
    faults = _faults()
    if faults.get("slow"):
        time.sleep(float(faults["slow"]))
    if faults.get("sigint") == str(step):
        signal.raise_signal(signal.SIGINT)


def during_save(step: int) -> None:
    """Called between the files of a checkpoint."""
    faults = _faults()
    if faults.get("save-abort") == str(step):
        os._exit(137)
    if faults.get("save-enospc") == str(step):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


_oom_seen: dict[int, int] = {}  # step -> the micro-batch size it ran out of memory with


def oom(step: int, batch_size: int) -> None:
    """`oom@S`: step S runs out of memory once at its first micro-batch size (any later halving fits)."""
    spec = _faults().get("oom")
    if spec is None or int(spec) != step:
        return
    first = _oom_seen.setdefault(step, batch_size)
    if batch_size == first:
        import torch

        raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (test fault oom@{step}, micro-batch {batch_size})")
