"""Shared test set-up: a private cache, deterministic threads, HF helpers."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

# Never touch the user's ~/.cache from tests: one cache per test session (tokenizers trained
# on the built-in corpus are reused across tests within the session).
os.environ.setdefault("PLMLAB_CACHE", tempfile.mkdtemp(prefix="plmlab-test-cache-"))
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def hf_dir(tmp_path):
    """A fresh directory for a Hugging Face checkpoint."""
    d = tmp_path / "hf"
    d.mkdir()
    return d
