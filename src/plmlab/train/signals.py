"""SIGINT / SIGTERM during training: finish the step, save a checkpoint, return.

The first signal only sets `received` (the loop checks it between steps); a second one
raises KeyboardInterrupt at once -- the save in progress, if any, is discarded by the
checkpoint writer and never half-committed.
"""

from __future__ import annotations

import signal
import threading
from typing import Callable


class StopOnSignal:
    def __init__(self, say: Callable[[str], None], step: Callable[[], int]) -> None:
        self.say, self.step = say, step  # where to report, and the step in progress
        self.received: int | None = None
        self._previous: dict = {}

    def _handler(self, signum, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt  # a second signal: stop now
        self.received = signum
        self.say(f"plmlab: {signal.Signals(signum).name}: finishing step {self.step()}, "
                 "then saving a checkpoint (again to stop at once)")

    def __enter__(self) -> "StopOnSignal":
        if threading.current_thread() is threading.main_thread():  # handlers only install there
            self._previous = {sig: signal.signal(sig, self._handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}
