"""Fault injection for the trainer's tests; plmlab itself knows nothing of it.

``PLMLAB_TEST_FAULT`` holds comma-separated faults. `register()` adds `install` to the Trainer's
creation hooks (plmlab.train.loop.TRAINER_CREATED): each new Trainer then reads the variable and,
if it names faults, gets its `micro_loss` wrapped, a step callback and its checkpoint writer
wrapped (monkeypatching the instances: the loop itself has no fault branches). The tests'
conftest registers it in the test process; in a subprocess (the CLI, torchrun's workers) the
`sitecustomize` in tests/fault_hook/ does, when the variable is set and that folder is on
PYTHONPATH (conftest puts it there).

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


def register() -> None:
    from plmlab.train.loop import TRAINER_CREATED

    if install not in TRAINER_CREATED:
        TRAINER_CREATED.append(install)


def install(trainer) -> None:
    """Wrap `trainer` (and its checkpoint writer) with the faults of PLMLAB_TEST_FAULT, if any."""
    faults = parse()
    if not faults:
        return
    saver = trainer.save_checkpoint if hasattr(trainer.save_checkpoint, "write_state") else None
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
