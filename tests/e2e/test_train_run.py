"""Pretraining runs in-process on gpt-tiny and a tiny synthetic corpus: learning, metrics,
final model, SIGINT + exact resume, NaN guard, full disk, corrupt checkpoints, pickles, CLI errors."""

from __future__ import annotations

import json
import os
import pickle
import random
import signal

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.train import PretrainOptions, pretrain, read_metrics
from plmlab.hf.manifest import list_checkpoints, verify

WORDS = dict(
    subject="the parser the module the function a list the tokenizer a model the server".split(" "),
    verb="returns reads writes sorts checks raises builds loads".split(),
    object="a value the file an error the result a token the cache".split(" "),
)


def write_corpus(folder, n_docs: int = 60, seed: int = 0):
    """A jsonl corpus of simple sentences from a tiny grammar (learnable in a few steps)."""
    rng = random.Random(seed)
    pick = {k: [" ".join(v[i:i + 2]) for i in range(0, len(v), 2)] if k != "verb" else v for k, v in WORDS.items()}
    lines = []
    for _ in range(n_docs):
        sentences = [f"{rng.choice(pick['subject']).capitalize()} {rng.choice(pick['verb'])} "
                     f"{rng.choice(pick['object'])}." for _ in range(rng.randint(5, 9))]
        lines.append(json.dumps({"text": " ".join(sentences)}))
    path = folder / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """Runs here use one thread (tiny models gain nothing from more, and lose a lot on a busy
    machine); give the rest of the session its thread count back."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def options(out, corpus, **kw) -> PretrainOptions:
    base = dict(preset="gpt-tiny", threads=1, corpus=[str(corpus)], batch_size=4, seq_len=32, max_steps=12, eval_every=6,
                eval_batches=2, save_every=3, lr=3e-3, warmup=2, progress="none", sample_tokens=0)
    return PretrainOptions(out=str(out), **{**base, **kw})


def losses(out) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_metrics(out / "metrics.jsonl")}


# ------------------------------------------------------------------ a whole run through the CLI
def test_cli_run_learns_writes_metrics_checkpoints_and_a_loadable_final_model(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    rc = main(["pretrain", "--preset", "gpt-tiny", "--corpus", str(corpus), "--out", str(out), "--max-steps", "30",
               "--batch-size", "8", "--seq-len", "32", "--lr", "5e-3", "--warmup", "3", "--save-every", "10",
               "--eval-every", "15", "--keep-last", "2", "--eval-batches", "2", "--progress", "plain",
               "--sample-tokens", "8", "--prompt", "The parser", "--d-model=48", "--set", "n_layers=1",
               "--threads", "1"])
    assert rc == 0
    stdout = capsys.readouterr().out
    assert "unigram" in stdout and "bigram" in stdout and "sample: 'The parser" in stdout
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, 31))
    assert {"step", "loss", "lr", "tokens", "tokens_per_s", "grad_norm", "skipped"} <= set(records[0])
    assert records[-1]["tokens"] == 30 * 8 * 32
    assert [r["step"] for r in records if "val_loss" in r] == [15, 30]
    assert all(r["val_ppl"] == pytest.approx(2.718281828 ** r["val_loss"], rel=1e-6) for r in records if "val_loss" in r)
    first, last = sum(r["loss"] for r in records[:5]) / 5, sum(r["loss"] for r in records[-5:]) / 5
    assert last < first - 1.0  # it learns
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [20, 30]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["val_loss"] < summary["baselines"]["unigram"]["loss"]
    model = plmlab.load_pretrained(out / "final")
    assert model.config.d_model == 48 and model.config.n_layers == 1 and model.config.eos_token_id is not None
    for name in ("tokenizer.json", "generation_config.json", "config.json", "model.safetensors"):
        assert (out / "final" / name).is_file()
    same = load_file(out / "final" / "model.safetensors")
    ckpt = load_file(out / "checkpoints" / "step-00000030" / "model.safetensors")
    assert same.keys() == ckpt.keys() and all(torch.equal(same[k], ckpt[k]) for k in same)


# ------------------------------------------------------------------ SIGINT, then exact resume
def test_sigint_saves_and_resume_matches_an_uninterrupted_run(tmp_path, corpus, monkeypatch):
    kw = dict(overrides={"dropout": 0.1})  # dropout: the torch generator must be restored too
    pretrain(options(tmp_path / "a", corpus, **kw))
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@5")  # a real SIGINT, sent during step 5
    out = tmp_path / "b"
    first = pretrain(options(out, corpus, **kw))
    assert first.interrupted == signal.SIGINT and first.step == 5 and first.final_dir is None
    assert list_checkpoints(out / "checkpoints")[-1][0] == 5  # saved at the step it stopped
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    second = pretrain(PretrainOptions(out=str(out), resume=True, progress="none", threads=1))
    assert second.resumed_from == first.step and second.step == 12
    assert losses(out) == losses(tmp_path / "a")
    a, b = load_file(tmp_path / "a/final/model.safetensors"), load_file(out / "final/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ NaN / Inf guard
def test_non_finite_steps_are_skipped_and_the_run_goes_on(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "nan@4-5")
    result = pretrain(options(tmp_path / "run", corpus, max_steps=8, save_every=4))
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert [r["step"] for r in records if r.get("skipped_step")] == [4, 5]
    assert records[3]["loss"] == "nan" and records[-1]["skipped"] == 2 and isinstance(records[-1]["loss"], float)
    assert result.step == 8 and result.val_loss is not None


def test_too_many_non_finite_steps_stop_the_run_and_keep_the_last_checkpoint(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "nan@4-")
    out = tmp_path / "run"
    with pytest.raises(PlmlabError, match="3 steps in a row had a non-finite loss"):
        pretrain(options(out, corpus, max_bad_steps=3, save_every=3))
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    verify(out / "checkpoints" / "step-00000003")
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert not (out / "final").exists()


# ------------------------------------------------------------------ full disk, corruption, pickles
def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, corpus, monkeypatch):
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "save-enospc@6")
    out = tmp_path / "run"
    with pytest.raises(PlmlabError, match="no space left on device; the previous checkpoint step-00000003 is intact"):
        pretrain(options(out, corpus))
    assert [s for s, _ in list_checkpoints(out / "checkpoints")] == [3]
    assert not list((out / "checkpoints").glob(".tmp-*"))
    verify(out / "checkpoints" / "step-00000003")


class Evil:
    """Unpickling this creates a folder: proof that something ran pickle.load."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_corrupt_checkpoint_is_skipped_and_pickles_are_never_loaded(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    pretrain(options(out, corpus, max_steps=6))
    marker = tmp_path / "pwned"
    for step in (3, 6):
        for name in ("optimizer.pt", "rng_state.pth", "pytorch_model.bin", "scheduler.pt"):
            (out / f"checkpoints/step-{step:08d}" / name).write_bytes(pickle.dumps(Evil(marker)))
    weights = out / "checkpoints/step-00000006/model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated
    result = pretrain(PretrainOptions(out=str(out), resume=True, progress="none", threads=1))
    assert "step-00000006: model.safetensors has" in capsys.readouterr().err
    assert result.resumed_from == 3 and result.step == 6
    assert not marker.exists()


# ------------------------------------------------------------------ refusing bad input
def run_cli(args, capsys):
    rc = main(["pretrain", *args])
    err = capsys.readouterr().err
    return rc, err


@pytest.mark.parametrize("case, message", [
    ("empty", "the corpus is empty"),
    ("binary", r"bad.txt: invalid UTF-8 byte 0xff at byte offset 6"),
    ("seq-len", r"--seq-len 4096 is longer than the model's context \(max_positions 128\)"),
    ("preset", "unknown preset 'gpt-tinyy'"),
    ("no-preset", "pass --preset NAME"),
    ("tokenizer", r"tokenizer has \d+ ids but the model's vocabulary has 64"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, corpus, capsys, case, message):
    args = ["--preset", "gpt-tiny", "--out", str(tmp_path / "run"), "--corpus", str(corpus), "--max-steps", "1"]
    if case == "empty":
        (tmp_path / "empty.txt").write_text("   \n")
        args[5] = str(tmp_path / "empty.txt")
    elif case == "binary":
        (tmp_path / "bad.txt").write_bytes(b"Hello \xff world.\n")
        args[5] = str(tmp_path / "bad.txt")
    elif case == "seq-len":
        args += ["--seq-len", "4096"]
    elif case == "preset":
        args[1] = "gpt-tinyy"
    elif case == "no-preset":
        args = args[2:]
    elif case == "tokenizer":
        from plmlab.tokenizers import train_tokenizer

        train_tokenizer(["some text to learn from"] * 10, "gpt2", 300).save(tmp_path / "tok")
        args += ["--tokenizer", str(tmp_path / "tok"), "--vocab-size", "64"]
    rc, err = run_cli(args, capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("plmlab: error: "), err
    assert __import__("re").search(message, err), err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_an_existing_run_is_not_clobbered_without_resume_or_overwrite(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    pretrain(options(out, corpus, max_steps=2, save_every=0))
    before = (out / "metrics.jsonl").read_bytes()
    rc, err = run_cli(["--preset", "gpt-tiny", "--corpus", str(corpus), "--out", str(out)], capsys)
    assert rc == 2 and "already holds a run" in err and "--overwrite" in err
    assert (out / "metrics.jsonl").read_bytes() == before
    result = pretrain(options(out, corpus, max_steps=3, save_every=0, overwrite=True))
    assert result.step == 3 and len(read_metrics(out / "metrics.jsonl")) == 3
    with pytest.raises(PlmlabError, match=r"--lr 0.1 \(the run has 0.003\)"):
        pretrain(PretrainOptions(out=str(out), resume=True, lr=0.1))


def test_tensorboard_logging_is_optional(tmp_path, corpus):
    o = options(tmp_path / "run", corpus, max_steps=2, save_every=0, tensorboard=True)
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(PlmlabError, match="pip install tensorboard"):
            pretrain(o)
        assert not (tmp_path / "run" / "metrics.jsonl").exists()
    else:
        pretrain(o)
        assert any((tmp_path / "run" / "tensorboard").iterdir())
