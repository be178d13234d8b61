"""Loaded by every Python process that has this folder on PYTHONPATH (the tests' conftest puts it
there for the subprocesses they start): when PLMLAB_TEST_FAULT is set, register the tests' fault
injection (tests/faults.py) with plmlab's Trainer. Without the variable it imports nothing."""

import os
import sys

if os.environ.get("PLMLAB_TEST_FAULT"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
    import faults

    faults.register()
