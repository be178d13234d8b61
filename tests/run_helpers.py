"""Shared by the crash tests: start `python -m plmlab ...` with a slow-step fault, and SIGKILL
it once its metrics.jsonl holds enough steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import plmlab


def kill_after_records(args: list[str], out: Path, records: int, fault: str, timeout: float) -> None:
    """Run the CLI with PLMLAB_TEST_FAULT=`fault` and SIGKILL it after `records` metric lines."""
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "PLMLAB_TEST_FAULT": fault, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-m", "plmlab", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + timeout
    while not metrics.exists() or len(metrics.read_text().splitlines()) < records:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline, "the run did not make progress"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
