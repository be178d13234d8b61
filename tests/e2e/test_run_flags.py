"""Every training verb takes the same run flags (cli/args.py's RUN_FLAGS), and they reach the
Trainer through the one builder (train/build.py): `plmlab sft|dpo|finetune|distill --max-steps N`
trains N steps with the optimizer, betas and schedule the flags name, and records them; a
resume with another --max-steps goes on to the new length and says the schedule moves, as
pretraining's does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.cli.args import RUN_FLAGS
from plmlab.tokenizers import train_tokenizer
from plmlab.train import read_metrics
from plmlab.train.optim import schedule
from plmlab.train.state import read_trainer_info, read_trainer_tensors

WORDS = "the cat dog sat ran on in a park mat good bad great awful movie plot".split()
QUIET = ["--progress", "none", "--threads", "1", "--batch-size", "2"]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A gpt-tiny and a bert-tiny with tokenizers of a small corpus, and data for each verb."""
    root = tmp_path_factory.mktemp("flags")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=8)) + "." for _ in range(200)]
    (root / "corpus").mkdir()
    for i in range(0, len(lines), 20):  # a file is a document: ten of them
        (root / "corpus" / f"{i}.txt").write_text("\n".join(lines[i:i + 20]))
    write(root / "chat.jsonl", [{"prompt": line[:20], "response": line[20:]} for line in lines[:12]])
    write(root / "prefs.jsonl", [{"prompt": line[:20], "chosen": " good", "rejected": " bad"} for line in lines[:12]])
    write(root / "labels.jsonl", [{"text": line, "label": "pos" if i % 2 else "neg"} for i, line in enumerate(lines[:12])])
    for name, style, preset in (("gpt", "gpt2", "gpt-tiny"), ("bert", "bert", "bert-tiny")):
        tok = train_tokenizer(lines, style, vocab_size=200, min_frequency=1)
        torch.manual_seed(0)
        plmlab.save_pretrained(plmlab.build_model(preset, vocab_size=tok.vocab_size), root / name, tokenizer=tok)
    return root


def write(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


VERBS = {  # verb: (its data flags, the run flags it is given)
    "sft": (["--model", "{gpt}", "--data", "{chat.jsonl}"],
            ["--optimizer", "muon", "--muon-lr", "0.01", "--schedule", "wsd", "--decay-fraction", "0.5"]),
    "dpo": (["--model", "{gpt}", "--data", "{prefs.jsonl}"], ["--schedule", "cosine", "--min-lr", "1e-4"]),
    "finetune": (["--model", "{bert}", "--task", "classification", "--train", "{labels.jsonl}"],
                 ["--schedule", "constant"]),
    "distill": (["--teacher", "{gpt}", "--corpus", "{corpus}", "--seq-len", "16"], ["--schedule", "linear"]),
}


def verb_args(root: Path, verb: str, out: Path, steps: int) -> list[str]:
    data, flags = VERBS[verb]
    data = [str(root / a[1:-1]) if a.startswith("{") else a for a in data]
    return [verb, *data, "--out", str(out), "--max-steps", str(steps), "--lr", "2e-3", "--warmup", "0.5",
            "--beta1", "0.8", "--beta2", "0.98", "--weight-decay", "0.05", *flags, *QUIET]


def run(args: list[str]) -> int:
    threads = torch.get_num_threads()
    try:
        return main(args)
    finally:
        torch.set_num_threads(threads)


def test_every_training_verb_declares_the_same_run_flags(capsys):
    for verb in ("pretrain", "finetune", "sft", "dpo", "distill"):
        with pytest.raises(SystemExit):
            main([verb, "--help"])
        shown = capsys.readouterr().out
        for name in RUN_FLAGS:
            if not (verb == "pretrain" and name == "epochs"):  # pretraining counts steps only
                assert f"--{name.replace('_', '-')} " in shown, (verb, name)


@pytest.mark.parametrize("verb", list(VERBS))
def test_max_steps_bounds_the_run_and_the_flags_reach_the_trainer(root, tmp_path, verb):
    out = tmp_path / "run"
    assert run(verb_args(root, verb, out, 3)) == 0
    records = [r for r in read_metrics(out / "metrics.jsonl") if "loss" in r]
    assert [r["step"] for r in records] == [1, 2, 3]
    folder = next((out / "checkpoints").glob("step-*"))
    info = read_trainer_info(folder)
    o = info["options"]
    assert (o["max_steps"], o["lr"], o["beta1"], o["beta2"], o["weight_decay"]) == (3, 2e-3, 0.8, 0.98, 0.05)
    # the learning rate of every step is the recorded schedule's (warmup 0.5 of 3 steps: 1 step)
    lr_at = schedule(o["schedule"], o["lr"], 1, 3, o["min_lr"], o["decay_fraction"], o["decay_shape"])
    assert [r["lr"] for r in records] == [lr_at(step) for step in (1, 2, 3)]
    state, _ = read_trainer_tensors(folder, info)
    adamw = state["adamw"] if o["optimizer"] == "muon" else state  # Muon + AdamW: one state each
    assert set(state) == ({"muon", "adamw"} if o["optimizer"] == "muon" else {"state", "param_groups"})
    assert {tuple(g["betas"]) for g in adamw["param_groups"]} == {(0.8, 0.98)}
    assert sorted({g["weight_decay"] for g in adamw["param_groups"]}) == [0.0, 0.05]


def test_a_resume_with_another_max_steps_goes_on_and_says_so(root, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(verb_args(root, "dpo", out, 2)) == 0
    capsys.readouterr()
    assert run(verb_args(root, "dpo", out, 4) + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert "--max-steps 4 (the run had max-steps 2) moves the learning-rate schedule's horizon" in err
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl") if "loss" in r] == [1, 2, 3, 4]
    assert run(verb_args(root, "dpo", out, 5) + ["--resume", "--beta2", "0.9"]) == 2  # the optimizer stays
    assert "beta2 0.9 (the run has 0.98)" in capsys.readouterr().err


def test_pretrain_epochs_says_what_pretraining_takes(capsys):
    from plmlab.cli import main

    assert main(["pretrain", "--preset", "gpt-tiny", "--out", "runs/never", "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unrecognized arguments: --epochs 3; pretraining counts optimizer steps: " \
        "use --max-steps N" in err
    assert main(["sft", "--model", "x", "--out", "runs/never", "--bogus"]) == 2  # no hint where none applies
    assert capsys.readouterr().err.strip().endswith("unrecognized arguments: --bogus (see plmlab --help)")
