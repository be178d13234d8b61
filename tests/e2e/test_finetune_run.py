"""Fine-tuning runs get what pretraining runs have (issue 9): a locked run directory that an
earlier run is never overwritten in without --overwrite, per-step metrics.jsonl, crash-safe
checkpoints and a --resume that is bit-identical after a SIGKILL (CPU, fp32, dropout on)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from run_helpers import kill_after_records
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.finetune import FinetuneOptions, finetune
from plmlab.tokenizers import train_tokenizer
from plmlab.train import read_metrics
from plmlab.hf.manifest import list_checkpoints

POS, NEG = ["good", "great", "fine", "nice"], ["bad", "awful", "poor", "sad"]
FILL = ["the", "movie", "was", "really", "a", "plot", "and", "actors"]
ARGS = dict(task="classification", epochs=3, batch_size=8, lr=3e-3, save_every=4, seed=5, threads=1, progress="none")


def sentence(rng, word: str) -> str:
    words = list(rng.choice(FILL, size=5))
    words.insert(int(rng.integers(0, 6)), word)
    return " ".join(words)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A bert-tiny with dropout (the torch generator must be restored on resume) and 48 examples."""
    root = tmp_path_factory.mktemp("ft")
    rng = np.random.default_rng(0)
    rows = [{"text": sentence(rng, str(rng.choice(POS if i % 2 else NEG))), "label": "pos" if i % 2 else "neg"}
            for i in range(48)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = train_tokenizer([r["text"] for r in rows], "bert", vocab_size=200, min_frequency=1)
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("bert-tiny", vocab_size=tok.vocab_size, dropout=0.1), root / "model",
                           tokenizer=tok)
    threads = torch.get_num_threads()
    finetune(options(root, root / "reference"), log=lambda line: None)
    torch.set_num_threads(threads)
    return root


def options(root: Path, out: Path, **kw) -> FinetuneOptions:
    return FinetuneOptions(model=str(root / "model"), train=str(root / "train.jsonl"), out=str(out), **{**ARGS, **kw})


def cli_args(root: Path, out: Path) -> list[str]:
    args = ["finetune", "--model", str(root / "model"), "--train", str(root / "train.jsonl"), "--out", str(out)]
    for key, value in ARGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def test_metrics_are_per_step_and_plottable(data, tmp_path):
    records = read_metrics(data / "reference" / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 19))  # 3 epochs x 6 batches of 8
    assert all({"loss", "lr", "tokens"} <= set(r) for r in records)
    assert [r["step"] for r in records if "eval_accuracy" not in r] == [r["step"] for r in records]  # no --eval
    assert [s for s, _ in list_checkpoints(data / "reference" / "checkpoints")] == [18]  # keep_last 1
    assert main(["plot", str(data / "reference"), "--out", str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0


def test_sigkill_mid_run_then_resume_is_bit_identical(data, tmp_path, capsys):
    out = tmp_path / "run"
    kill_after_records(cli_args(data, out), out, 9, "slow@0.25", 90)
    saved = list_checkpoints(out / "checkpoints")[-1][0]
    assert saved in (8, 12) and not (out / "final").exists()
    threads = torch.get_num_threads()
    finetune(options(data, out, resume=True), log=lambda line: None)
    torch.set_num_threads(threads)
    assert f"from step-{saved:08d}" in capsys.readouterr().err  # resumed, not started over
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(data / "reference" / "metrics.jsonl")
    assert [r["step"] for r in ours] == list(range(1, 19))  # reads as one run
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]  # bit-identical
    a, b = load_file(out / "final/model.safetensors"), load_file(data / "reference/final/model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_an_earlier_finetune_or_pretraining_run_is_refused_without_overwrite(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(cli_args(data, out) + ["--epochs", "1"]) == 0
    before = (out / "final" / "model.safetensors").read_bytes()
    capsys.readouterr()
    assert main(cli_args(data, out) + ["--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run" in err and "--overwrite" in err
    assert (out / "final" / "model.safetensors").read_bytes() == before
    assert main(cli_args(data, out) + ["--epochs", "1", "--overwrite", "--seed", "6"]) == 0
    assert (out / "final" / "model.safetensors").read_bytes() != before

    pretrained = tmp_path / "pretrain"
    from plmlab.train import PretrainOptions, pretrain

    pretrain(PretrainOptions(out=str(pretrained), preset="gpt-tiny", corpus=[str(data / "train.jsonl")],
                             max_steps=1, batch_size=2, seq_len=16, eval_every=0, save_every=0, sample_tokens=0,
                             progress="none", threads=1))
    metrics = (pretrained / "metrics.jsonl").read_bytes()
    capsys.readouterr()
    assert main(cli_args(data, pretrained)) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (pretrained / "metrics.jsonl").read_bytes() == metrics


def test_resume_refuses_changed_settings(data, tmp_path):
    out = tmp_path / "run"
    finetune(options(data, out, epochs=1), log=lambda line: None)
    with pytest.raises(PlmlabError, match=r"lr 0.1 \(the run has 0.003\)"):
        finetune(options(data, out, epochs=1, lr=0.1, resume=True), log=lambda line: None)


def test_the_default_lr_is_inverse_to_the_width_and_small_data_gets_more_epochs():
    from plmlab.finetune.options import default_epochs, default_lr

    # ELECTRA's fine-tuning rates: 1e-4 at width 768 (Base), 3e-4 at 256 (Small); LoRA 10 x
    assert default_lr(1e-4, 768) == 1e-4 and default_lr(1e-4, 256) == 3e-4 and default_lr(1e-4, 1024) == 7.5e-5
    assert default_lr(1e-4, 256, lora=True) == 3e-3 and default_lr(1e-5, 4096) == 1.9e-6
    assert default_epochs(3, 1000) == 3 and default_epochs(3, 20) == 10 and default_epochs(1, 40) == 5
    assert default_epochs(3, 1) == default_epochs(1, 5) == 20  # at most MAX_EPOCHS


def test_a_run_without_lr_or_epochs_prints_and_records_the_derived_ones(data, tmp_path, capsys):
    """The derived values are what the run trains with, records (a resume without them derives the
    same, and agrees) and prints."""
    args = [x for x in cli_args(data, tmp_path / "run") if x not in ("--lr", str(ARGS["lr"]), "--epochs",
                                                                      str(ARGS["epochs"]))]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lr 0.0012 (the default: 0.0001 x 768 / width 64; --lr sets it)" in lines  # bert-tiny
    assert "epochs 20 (the default: 3, or more for 200 steps of 6 an epoch; --epochs sets it)" in lines  # 48 / 8
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert max(r["lr"] for r in records) == pytest.approx(1.2e-3) and records[-1]["step"] == 20 * 6
    assert main(args + ["--resume"]) == 0  # the record holds what was derived; the resumed run derives it again
    with pytest.raises(PlmlabError, match=r"lr 0.002 \(the run has 0.0012\)"):
        finetune(options(data, tmp_path / "run", epochs=20, lr=2e-3, resume=True), log=lambda line: None)


@pytest.mark.parametrize("field, value, message", [
    ("lr", float("nan"), "--lr must be a finite number"),
    ("seed", -1, r"--seed must be an integer in \[0, 2\*\*63\)"),
    ("seed", 2**63, r"--seed must be an integer in \[0, 2\*\*63\)"),
    ("device", "bogus", "unknown device 'bogus'"),
    ("warmup", -1.0, r"--warmup is a fraction of the steps, in \[0, 1\]"),
    ("epochs", 0, "--epochs must be a positive integer"),
    ("max_steps", 0, "--max-steps must be a positive integer"),
    ("beta2", 1.0, r"--beta2 must be in \[0, 1\)"),
])
def test_options_are_checked_in_the_record(tmp_path, field, value, message):
    with pytest.raises(PlmlabError, match=message):
        FinetuneOptions(model="m", task="classification", train="t", out=str(tmp_path), **{field: value})


def test_max_steps_trains_that_many_steps_instead_of_epochs(data, tmp_path, capsys):
    """--max-steps, as pretraining's: the run is those steps (past an epoch or within one), the
    schedule spans them, and it evaluates at each epoch's end and at its own."""
    threads = torch.get_num_threads()
    for steps in (2, 9):  # 48 examples at batch 8: an epoch is 6 steps
        finetune(options(data, tmp_path / f"s{steps}", epochs=None, max_steps=steps, eval=str(data / "train.jsonl")),
                 log=lambda line: None)
        records = read_metrics(tmp_path / f"s{steps}" / "metrics.jsonl")
        assert [r["step"] for r in records if "loss" in r][-1] == steps
        assert [r["step"] for r in records if "eval_accuracy" in r] == sorted({*range(6, steps + 1, 6), steps})
    torch.set_num_threads(threads)
    with pytest.raises(PlmlabError, match="pass --epochs or --max-steps, not both"):
        options(data, tmp_path / "both", epochs=2, max_steps=3)
    args = cli_args(data, tmp_path / "cli")
    assert main(args + ["--max-steps", "2"]) == 2  # with the --epochs 3 of cli_args: refused
    at = args.index("--epochs")
    assert main(args[:at] + args[at + 2:] + ["--max-steps", "2"]) == 0
    assert [r["step"] for r in read_metrics(tmp_path / "cli" / "metrics.jsonl") if "loss" in r][-1] == 2


def test_adam_betas_are_run_flags_as_in_pretraining(data, tmp_path):
    args = cli_args(data, tmp_path / "betas")
    at = args.index("--epochs")
    assert main(args[:at] + args[at + 2:] + ["--max-steps", "1", "--beta1", "0.8", "--beta2", "0.98"]) == 0
    from plmlab.train.state import read_trainer_info, read_trainer_tensors

    folder = next((tmp_path / "betas" / "checkpoints").glob("step-*"))
    info = read_trainer_info(folder)
    assert info["options"]["beta1"] == 0.8 and info["options"]["beta2"] == 0.98
    optimizer, _ = read_trainer_tensors(folder, info)
    assert {tuple(g["betas"]) for g in optimizer["param_groups"]} == {(0.8, 0.98)}


def test_a_task_module_that_fails_to_import_fails_loudly(monkeypatch):
    from plmlab.finetune import tasks

    monkeypatch.setattr(tasks, "TASK_MODULES", tasks.TASK_MODULES + ("no_such_task_module",))
    with pytest.raises(ModuleNotFoundError, match="no_such_task_module"):
        tasks.task_names()


def test_ddp_two_processes_match_one_with_the_same_global_batch(data, tmp_path):
    """torchrun, 2 CPU processes x batch 4 == 1 process x batch 8 (no dropout: the same numbers)."""
    import shutil
    import socket

    root = tmp_path / "nodrop"
    root.mkdir()
    shutil.copy(data / "train.jsonl", root / "train.jsonl")
    model = plmlab.load_pretrained(data / "model")
    plmlab.save_pretrained(model.__class__(model.config.replace(dropout=0.0, attn_dropout=0.0)), root / "model", format="plmlab")
    model = plmlab.load_pretrained(root / "model")
    model.load_state_dict(plmlab.load_pretrained(data / "model").state_dict())
    plmlab.save_pretrained(model, root / "model", tokenizer=plmlab.tokenizers.load_tokenizer(data / "model"))
    threads = torch.get_num_threads()
    finetune(options(root, tmp_path / "one"), log=lambda line: None)
    torch.set_num_threads(threads)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    args = cli_args(root, tmp_path / "two")
    args[args.index("--batch-size") + 1] = "4"  # per rank: 2 x 4 = the single process's 8
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                           "127.0.0.1", "--master_port", str(port), "-m", "plmlab", *args],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    ours, theirs = read_metrics(tmp_path / "two" / "metrics.jsonl"), read_metrics(tmp_path / "one" / "metrics.jsonl")
    assert [r["step"] for r in ours] == [r["step"] for r in theirs] == list(range(1, 19))
    assert [r["tokens"] for r in ours] == [r["tokens"] for r in theirs]
    # the same examples per step, the same loss weighting: equal up to float summation order
    assert [r["loss"] for r in ours] == pytest.approx([r["loss"] for r in theirs], rel=1e-5)
    a, b = load_file(tmp_path / "two/final/model.safetensors"), load_file(tmp_path / "one/final/model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=5e-5, msg=k)


def test_sigint_saves_and_the_cli_says_how_to_resume(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@5")
    out = tmp_path / "run"
    assert main(cli_args(data, out)) == 128 + signal.SIGINT
    assert "continue with --resume" in capsys.readouterr().err
    assert list_checkpoints(out / "checkpoints")[-1][0] == 5 and not (out / "final").exists()
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    assert main(cli_args(data, out) + ["--resume"]) == 0
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(data / "reference" / "metrics.jsonl")
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]
