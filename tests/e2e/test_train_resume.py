"""Exact resume after a hard kill: a `plmlab pretrain` subprocess is SIGKILLed mid-run (or dies
halfway through writing a checkpoint); `--resume` must then give bit-identical per-step losses
and final weights to an uninterrupted run (CPU, fp32, dropout on)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.train import PretrainOptions, pretrain, read_metrics
from plmlab.hf.manifest import list_checkpoints, verify

ARGS = dict(preset="gpt-tiny", batch_size=4, seq_len=32, max_steps=12, save_every=3, eval_every=6, eval_batches=2,
            lr=3e-3, warmup=2, seed=7, threads=1, progress="none", sample_tokens=0)
OVERRIDES = {"dropout": 0.1}


def write_corpus(path: Path) -> Path:
    rng = random.Random(1)
    words = "the a parser module reads writes returns value file error list token cache builds".split()
    lines = [json.dumps({"text": " ".join(" ".join(rng.choices(words, k=8)).capitalize() + "." for _ in range(6))})
             for _ in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run (in-process) and the corpus it used."""
    root = tmp_path_factory.mktemp("resume")
    corpus = write_corpus(root / "corpus.jsonl")
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(root / "reference"), corpus=[str(corpus)], overrides=OVERRIDES, **ARGS))
    torch.set_num_threads(threads)
    return root / "reference", corpus


def cli(out: Path, corpus: Path, fault: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "plmlab", "pretrain", "--out", str(out), "--corpus", str(corpus), "--dropout=0.1"]
    for key, value in ARGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "PLMLAB_TEST_FAULT": fault, "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def resume_and_compare(out: Path, reference: Path) -> None:
    threads = torch.get_num_threads()
    result = pretrain(PretrainOptions(out=str(out), resume=True))
    torch.set_num_threads(threads)
    assert result.step == 12
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["step"] for r in ours] == list(range(1, 13))  # reads as one run
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]  # bit-identical
    assert [r.get("val_loss") for r in ours] == [r.get("val_loss") for r in theirs]
    a, b = load_file(out / "final/model.safetensors"), load_file(reference / "final/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def wait_for_records(proc: subprocess.Popen, metrics: Path, n: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended early: {proc.stderr.read().decode()}")
        if metrics.exists() and len(metrics.read_text().splitlines()) >= n:
            return
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the run did not make progress")


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path, reference):
    ref, corpus = reference
    out = tmp_path / "run"
    proc = cli(out, corpus, "slow@0.3")  # 7 steps x 0.3 s of margin for the poll
    wait_for_records(proc, out / "metrics.jsonl", 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(read_metrics(out / "metrics.jsonl"))
    assert 5 <= done < 12 and list_checkpoints(out / "checkpoints")[-1][0] in (3, 6, 9)
    resume_and_compare(out, ref)


def test_death_halfway_through_a_save_leaves_the_previous_checkpoint(tmp_path, reference):
    ref, corpus = reference
    out = tmp_path / "run"
    proc = cli(out, corpus, "save-abort@6")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 137, err.decode()
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]  # step 6 never committed
    assert list((out / "checkpoints").glob(".tmp-step-00000006-*"))  # the half-written folder
    verify(out / "checkpoints" / "step-00000003")
    resume_and_compare(out, ref)
    assert not list((out / "checkpoints").glob(".tmp-*"))  # cleaned up by the next save
