"""Shared test set-up: the tiers' markers, a private cache, deterministic threads, HF helpers.

The tests live in three tiers, one folder each (tests/unit/test_tiers.py keeps it so):
  unit/    one module's behaviour in process, tiny models, seconds
  parity/  against an oracle: transformers, peft, lm-eval, seqeval, real published weights, the
           authors' code (reference/), the golden losses (golden/)
  e2e/     whole paths: the CLI in a subprocess, whole training runs and resumes, torchrun (DDP,
           FSDP2), servers, a headless browser, the README and docs commands
Each test is marked with its tier's name, so `pytest -m "not e2e"` (or `make test-fast`) runs the
fast tiers. The helpers (faults.py, run_helpers.py, ...) stay here, importable by name from every
tier (pyproject's pythonpath)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import faults
import pytest
import torch

# Never touch the user's ~/.cache from tests: one cache per test session (tokenizers trained
# on the built-in corpus are reused across tests within the session).
os.environ.setdefault("PLMLAB_CACHE", tempfile.mkdtemp(prefix="plmlab-test-cache-"))
# Tiny test models gain nothing from a second thread and lose much on a loaded 2-core box.
torch.set_num_threads(1)

# Fault injection (tests/faults.py) through the Trainer's creation hook: in this process, and in
# the subprocesses the tests start (the CLI, torchrun's workers), whose sitecustomize registers it.
faults.register()
TESTS = Path(__file__).resolve().parent
_HOOK = str(TESTS / "fault_hook")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_HOOK, os.environ.get("PYTHONPATH")]))

TIERS = ("unit", "parity", "e2e")


def tier_of(path: Path) -> str | None:
    """The tier of a test file: the folder under tests/ that holds it (None: not in a tier)."""
    parts = Path(path).resolve().relative_to(TESTS).parts
    return parts[0] if len(parts) == 2 and parts[0] in TIERS else None


def pytest_collection_modifyitems(items):
    for item in items:
        tier = tier_of(item.path)
        if tier is not None:
            item.add_marker(tier)


@pytest.fixture(scope="session")
def minilm_dir():
    """all-MiniLM-L6-v2 as published (tests/real_weights.py); skips where it is not installed."""
    from real_weights import minilm
    return minilm()


@pytest.fixture(scope="session")
def smollm2_dir(pytestconfig):
    """SmolLM2-135M-Instruct as an fp32 Hugging Face directory (tests/real_weights.py)."""
    from real_weights import smollm2
    return smollm2(pytestconfig.cache.mkdir("real-weights"))


@pytest.fixture
def hf_dir(tmp_path):
    """A fresh directory for a Hugging Face checkpoint."""
    d = tmp_path / "hf"
    d.mkdir()
    return d
