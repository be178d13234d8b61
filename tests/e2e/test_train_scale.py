"""Scale and precision (train/parallel.py, precision.py, flops.py): DDP under torchrun (2 CPU processes, gloo) equals one
process with the same global batch; resume on another world size; activation checkpointing,
--global-batch-tokens, precision switches, OOM back-off bookkeeping, MFU arithmetic."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.errors import PlmlabError
from plmlab.train import PretrainOptions, pretrain
from plmlab.train.metrics import read_metrics
from plmlab.train.flops import flops_per_token
from plmlab.train.parallel import grad_accum_for, rescale_for_world
from plmlab.train.precision import Precision

COMMON = dict(preset="gpt-tiny", optimizer="adamw", seq_len=32, grad_accum=2, max_steps=6, lr=3e-3, warmup=2, seed=3,
              eval_every=3, save_every=3, eval_batches=2, progress="none", sample_tokens=0, threads=1)


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def write_corpus(path: Path) -> Path:
    rng = random.Random(1)
    words = "the a parser module reads writes returns value file error list token cache builds".split()
    lines = [json.dumps({"text": " ".join(" ".join(rng.choices(words, k=8)).capitalize() + "." for _ in range(6))})
             for _ in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(out: Path, corpus: Path, nproc: int, fault: str = "", **options) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), "-m", "plmlab", "pretrain",
            "--out", str(out), "--corpus", str(corpus)]
    for key, value in {**COMMON, **options}.items():
        args += [f"--{key.replace('_', '-')}"] + ([str(value)] if value != "" else [])
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "PLMLAB_TEST_FAULT": fault, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)


def assert_close_runs(a: Path, b: Path, steps=None) -> None:
    ra, rb = read_metrics(a / "metrics.jsonl"), read_metrics(b / "metrics.jsonl")
    if steps is not None:
        ra = [r for r in ra if r["step"] in steps]
        rb = [r for r in rb if r["step"] in steps]
    assert [r["step"] for r in ra] == [r["step"] for r in rb] and ra
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)
        assert x["tokens"] == y["tokens"]
        assert (x.get("val_loss") is None) == (y.get("val_loss") is None)
        if x.get("val_loss") is not None:
            assert x["val_loss"] == pytest.approx(y["val_loss"], rel=1e-5)
    wa, wb = load_file(a / "final/model.safetensors"), load_file(b / "final/model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=5e-5, msg=k)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale")
    os.environ.setdefault("PLMLAB_CACHE", str(root / "cache"))
    corpus = write_corpus(root / "corpus.jsonl")
    pretrain(PretrainOptions(out=str(root / "one"), corpus=[str(corpus)], batch_size=4, **COMMON))
    return root / "one", corpus


def test_ddp_two_processes_match_one_with_the_same_global_batch(tmp_path, single):
    one, corpus = single
    done = torchrun(tmp_path / "two", corpus, 2, batch_size=2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_close_runs(one, tmp_path / "two")
    assert done.stdout.count("final model:") == 1  # rank 0 alone reports
    info = json.loads((tmp_path / "two/checkpoints/step-00000006/trainer/state.json").read_text())
    assert info["world_size"] == 2 and info["options"]["batch_size"] == 2


def test_a_two_rank_run_resumes_in_one_process(tmp_path, single):
    one, corpus = single
    done = torchrun(tmp_path / "two", corpus, 2, fault="sigint@3", batch_size=2)
    assert done.returncode != 0 and (tmp_path / "two/checkpoints/step-00000003").is_dir(), done.stderr[-3000:]
    assert not (tmp_path / "two/final").exists()
    result = pretrain(PretrainOptions(out=str(tmp_path / "two"), resume=True))
    assert result.step == 6 and result.resumed_from == 3
    assert_close_runs(one, tmp_path / "two")


def test_fsdp2_two_ranks_match_one_process_and_resume_sharded(tmp_path, single):
    """FSDP2 (fully_shard) on CPU/gloo: killed (SIGINT) at step 3, resumed on 2 ranks from the
    full-state checkpoint (re-sharded on load), the run equals the single-process one."""
    one, corpus = single
    done = torchrun(tmp_path / "fsdp", corpus, 2, fault="sigint@3", batch_size=2, strategy="fsdp")
    assert (tmp_path / "fsdp/checkpoints/step-00000003").is_dir(), done.stderr[-3000:]
    ours = load_file(tmp_path / "fsdp/checkpoints/step-00000003/trainer/tensors.safetensors")
    theirs = load_file(one / "checkpoints/step-00000003/trainer/tensors.safetensors")
    assert ours.keys() == theirs.keys()  # the single-process format, unsharded
    done = torchrun(tmp_path / "fsdp", corpus, 2, batch_size=2, strategy="fsdp", resume="")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_close_runs(one, tmp_path / "fsdp")


def test_rescale_for_world():
    assert rescale_for_world({"batch_size": 2}, 2, 1) == {"batch_size": 4}
    assert rescale_for_world({"batch_size": 4}, 1, 2) == {"batch_size": 2}
    with pytest.raises(PlmlabError, match="does not split"):
        rescale_for_world({"batch_size": 3}, 1, 2)


def test_activation_checkpointing_gives_the_same_run(tmp_path, single):
    one, corpus = single
    pretrain(PretrainOptions(out=str(tmp_path / "ac"), corpus=[str(corpus)], batch_size=4,
                             activation_checkpointing=True, **COMMON))
    a, b = read_metrics(one / "metrics.jsonl"), read_metrics(tmp_path / "ac/metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-6)
    assert [r["grad_norm"] for r in a] == pytest.approx([r["grad_norm"] for r in b], rel=1e-5)


def test_activation_checkpointing_sets_every_stack():
    from plmlab.modeling import build_model
    from plmlab.presets import get_preset
    from plmlab.train.parallel import find_stacks, set_activation_checkpointing

    model = build_model(get_preset("t5-tiny"))
    assert set_activation_checkpointing(model, True) == 2  # encoder and decoder
    assert all(s.gradient_checkpointing for s in find_stacks(model))


def test_global_batch_tokens_sets_grad_accum(tmp_path, single):
    _, corpus = single
    options = {**COMMON, "max_steps": 2, "save_every": 0, "eval_every": 0}
    options.pop("grad_accum")
    result = pretrain(PretrainOptions(out=str(tmp_path / "g"), corpus=[str(corpus)], batch_size=2,
                                      global_batch_tokens=2 * 32 * 3, **options))
    assert result.tokens == 2 * 2 * 32 * 3
    info = json.loads((tmp_path / "g/checkpoints/step-00000002/trainer/state.json").read_text())
    assert info["options"]["grad_accum"] == 3
    assert grad_accum_for(4096, 4, 128, 2) == 4
    with pytest.raises(PlmlabError, match="not a multiple"):
        grad_accum_for(1000, 4, 128, 1)


def test_precision_switches():
    cpu = torch.device("cpu")
    assert Precision("auto", cpu).dtype is None and Precision("fp32", cpu).scaler is None
    warned = []
    assert Precision("bf16-mixed", cpu, warn=warned.append).dtype == torch.bfloat16 and warned
    assert Precision("bf16", cpu).name == "bf16-mixed"
    with pytest.raises(PlmlabError, match="fp16-mixed needs a CUDA"):
        Precision("fp16-mixed", cpu)


def test_cli_rejects_fp16_on_cpu_in_one_line(tmp_path, capsys):
    from plmlab.cli import main

    code = main(["pretrain", "--preset", "gpt-tiny", "--out", str(tmp_path / "x"), "--device", "cpu",
                 "--precision", "fp16-mixed", "--max-steps", "1"])
    assert code == 2 and capsys.readouterr().err.strip().startswith("plmlab: error: --precision fp16-mixed needs")


def test_oom_backoff_halves_the_micro_batch_and_keeps_the_run(tmp_path, single, monkeypatch):
    one, corpus = single
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "oom@2")
    with pytest.raises(torch.cuda.OutOfMemoryError):
        pretrain(PretrainOptions(out=str(tmp_path / "no"), corpus=[str(corpus)], batch_size=4, **COMMON))
    import faults

    faults._oom_seen.clear()
    pretrain(PretrainOptions(out=str(tmp_path / "oom"), corpus=[str(corpus)], batch_size=4, oom_backoff=True,
                             **COMMON))
    a, b = read_metrics(one / "metrics.jsonl"), read_metrics(tmp_path / "oom/metrics.jsonl")
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-5)  # same global batches
    info = json.loads((tmp_path / "oom/checkpoints/step-00000006/trainer/state.json").read_text())
    assert (info["options"]["batch_size"], info["options"]["grad_accum"]) == (2, 4)


def test_mfu_arithmetic_and_cpu_omits_it(single):
    one, _ = single
    assert flops_per_token(1000, 2, 8, 16) == 6000 + 12 * 2 * 8 * 16
    assert all("mfu" not in r for r in read_metrics(one / "metrics.jsonl"))


def test_peak_flops_gives_mfu(tmp_path, single):
    _, corpus = single
    options = {**COMMON, "max_steps": 1, "save_every": 0, "eval_every": 0}
    pretrain(PretrainOptions(out=str(tmp_path / "m"), corpus=[str(corpus)], batch_size=2, peak_flops=1e12, **options))
    record = read_metrics(tmp_path / "m/metrics.jsonl")[0]
    assert 0 < record["mfu"] < 1


@pytest.mark.skipif(not os.environ.get("PLMLAB_TEST_COMPILE"),
                    reason="torch.compile takes ~40 s on this 2-core CPU (over the suite's budget); "
                           "set PLMLAB_TEST_COMPILE=1 to run it")
def test_compile_flag_runs_two_steps(tmp_path, single):
    import time

    _, corpus = single
    options = {**COMMON, "max_steps": 2, "save_every": 0, "eval_every": 0, "grad_accum": 1}
    start = time.perf_counter()
    try:
        pretrain(PretrainOptions(out=str(tmp_path / "c"), corpus=[str(corpus)], batch_size=2, compile=True, **options))
    except Exception as e:  # no C++ compiler here, etc.
        pytest.skip(f"torch.compile unavailable on this machine: {type(e).__name__}: {str(e)[:200]}")
    if time.perf_counter() - start > 60:
        pytest.skip("torch.compile took over 60 s on this CPU")
    assert len(read_metrics(tmp_path / "c/metrics.jsonl")) == 2
