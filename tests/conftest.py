"""Shared test set-up: a private cache, deterministic threads, HF helpers."""

from __future__ import annotations

import os
import tempfile

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
_HOOK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fault_hook")
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [_HOOK, os.environ.get("PYTHONPATH")]))


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
