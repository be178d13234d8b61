"""A new user's first run: `plmlab --version`, the status lines before step 1, the hints after
the summary, and what a finished run leaves (summary.json with the options and machine,
final/README.md)."""

from __future__ import annotations

import importlib.metadata

import pytest
import torch

from plmlab.cli import main


def test_version_names_plmlab_and_torch(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"plmlab {importlib.metadata.version('plmlab')} (torch {torch.__version__})\n"
