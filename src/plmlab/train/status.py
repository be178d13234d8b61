"""Status lines before step 1: what each stage of a run's set-up did, with its numbers and time.

A new run reads the corpus, trains a tokenizer and tokenizes the corpus into shards (each cached
for later runs), then builds the model; on a slow machine the first run spends a minute there.
One line per stage on stderr tells the user what is going on; a stage about to do slow work
that is cached afterwards says so first. Silent on ranks other than 0 and with --progress none.
"""

from __future__ import annotations

import time
from typing import Callable

from ..errors import warn


class Status:
    def __init__(self, on: bool, clock: Callable[[], float] = time.perf_counter) -> None:
        self.on, self.clock = on, clock
        self.since = clock()

    def say(self, message: str) -> None:
        if self.on:
            warn(message)

    def done(self, stage: str, result: str) -> None:
        """A stage's result, with the time since the previous one: `corpus (3.2 s): ...`."""
        now = self.clock()
        self.say(f"{stage} ({now - self.since:.1f} s): {result}")
        self.since = now
