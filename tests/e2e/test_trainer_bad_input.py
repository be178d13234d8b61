"""Bad input and faults around a pretraining run (issue 9): each is one line on stderr and exit
2, and nothing already written is lost -- a full disk (safetensors' own SafetensorError, or
ENOSPC / EFBIG) while saving a checkpoint or final/, --resume on a finished run without a
checkpoint, unchecked option values, a forged trainer state, a changed --max-steps."""

from __future__ import annotations

import errno
import json
import random

import pytest
import torch
from safetensors import SafetensorError

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.train import PretrainOptions, pretrain
from plmlab.hf.manifest import list_checkpoints, verify
from plmlab.train.checkpoint import _write_manifest

WORDS = "the a parser module reads writes returns value file error list token cache builds".split()
BASE = dict(preset="gpt-tiny", batch_size=2, seq_len=16, max_steps=6, save_every=3, eval_every=0, eval_batches=1,
            lr=3e-3, warmup=1, threads=1, progress="none", sample_tokens=0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    rng = random.Random(2)
    path = tmp_path_factory.mktemp("bad") / "corpus.jsonl"
    path.write_text("".join(json.dumps({"text": " ".join(" ".join(rng.choices(WORDS, k=7)) + "." for _ in range(5))})
                            + "\n" for _ in range(30)))
    return path


@pytest.fixture(autouse=True)
def keep_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def run(out, corpus, **kw):
    return pretrain(PretrainOptions(out=str(out), corpus=[str(corpus)], **{**BASE, **kw}))


def cli(args, capsys):
    capsys.readouterr()
    rc = main(["pretrain", *args])
    return rc, capsys.readouterr().err


def cli_args(out, corpus, **kw):
    args = ["--out", str(out), "--corpus", str(corpus)]
    for key, value in {**BASE, **kw}.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return args


def failing_on_call(n: int, error: BaseException, real):
    """`real`, except that its n-th call raises `error` (after writing nothing)."""
    calls = []

    def fake(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            raise error
        return real(*args, **kwargs)
    return fake


@pytest.mark.parametrize("error, reason", [
    (SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })"), "could not write the weights"),
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on device"),
    (OSError(errno.EFBIG, "File too large"), r"file too large \(the file-size limit, ulimit -f"),
])
def test_full_disk_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, corpus, capsys, monkeypatch, error, reason):
    from plmlab.train import state

    monkeypatch.setattr(state, "save_file", failing_on_call(2, error, state.save_file))  # step 6's trainer state
    rc, err = cli(cli_args(tmp_path / "run", corpus), capsys)
    assert rc == 2 and err.count("\n") == 1 and err.startswith("plmlab: error: could not save checkpoint step-00000006")
    assert __import__("re").search(reason, err) and "the previous checkpoint step-00000003 is intact" in err
    assert [s for s, _ in list_checkpoints(tmp_path / "run" / "checkpoints")] == [3]
    assert not list((tmp_path / "run" / "checkpoints").glob(".tmp-*"))
    verify(tmp_path / "run" / "checkpoints" / "step-00000003")


@pytest.mark.parametrize("error", [SafetensorError("Error while serializing: IoError(StorageFull)"),
                                   OSError(errno.EFBIG, "File too large")])
def test_full_disk_while_saving_final_leaves_no_temp_folder_and_keeps_the_checkpoint(tmp_path, corpus, capsys,
                                                                                       monkeypatch, error):
    import plmlab.hf

    real = plmlab.hf.save_pretrained

    def save(model, path, **kwargs):
        if str(path).split("/")[-1].startswith(".tmp-final-"):
            real(model, path, **kwargs)  # most of it written, then the disk fills up
            raise error
        return real(model, path, **kwargs)

    monkeypatch.setattr(plmlab.hf, "save_pretrained", save)  # what train/saving.py calls
    out = tmp_path / "run"
    rc, err = cli(cli_args(out, corpus), capsys)
    assert rc == 2 and err.count("\n") == 1 and "could not save the final model" in err, err
    assert not list(out.glob(".tmp-final-*")) and not (out / "final").exists()
    verify(out / "checkpoints" / "step-00000006")  # --resume can write final/ again
    monkeypatch.setattr(plmlab.hf, "save_pretrained", real)
    assert pretrain(PretrainOptions(out=str(out), resume=True)).final_dir == str(out / "final")


def test_resume_on_a_run_with_final_but_no_checkpoint_is_refused(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    run(out, corpus)
    for _, folder in list_checkpoints(out / "checkpoints"):
        __import__("shutil").rmtree(folder)
    final, metrics = (out / "final" / "model.safetensors").read_bytes(), (out / "metrics.jsonl").read_bytes()
    rc, err = cli(["--out", str(out), "--resume"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "but no checkpoint to resume from" in err and "--overwrite" in err
    assert (out / "final" / "model.safetensors").read_bytes() == final and (out / "metrics.jsonl").read_bytes() == metrics


@pytest.mark.parametrize("name, value, message", [
    ("lr", float("nan"), "--lr must be a finite number"),
    ("seed", -1, r"--seed must be an integer in \[0, 2\*\*63\)"),
    ("seed", 2**63, r"--seed must be an integer in \[0, 2\*\*63\)"),
    ("device", "bogus", "unknown device 'bogus'"),
    ("warmup", -1, "--warmup must be 0 or more"),
])
def test_bad_option_values_are_one_line(tmp_path, corpus, capsys, name, value, message):
    rc, err = cli(cli_args(tmp_path / "run", corpus) + [f"--{name}", str(value)], capsys)
    assert rc == 2 and err.count("\n") == 1 and __import__("re").search(message, err), err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()
    with pytest.raises(PlmlabError, match=message):  # the Python API checks the same
        PretrainOptions(out=str(tmp_path / "x"), preset="gpt-tiny", **{name: value}).resolved()


def test_a_changed_max_steps_on_resume_says_the_schedule_changes(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    run(out, corpus)
    capsys.readouterr()
    result = pretrain(PretrainOptions(out=str(out), resume=True, max_steps=8))
    err = capsys.readouterr().err
    assert result.step == 8
    assert "--max-steps 8 (the run had 6) moves the learning-rate schedule's horizon" in err
    assert sum("max-steps" in line for line in err.splitlines()) == 1


def forge(folder, change):
    path = folder / "trainer" / "state.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps(change(info)))
    (folder / "manifest.json").unlink()
    _write_manifest(folder, int(folder.name.split("-")[1]))  # a forger can seal it again


@pytest.mark.parametrize("change, message", [
    (lambda i: {**i, "state": {**i["state"], "step": -3}}, r"trainer state is corrupt \(step = -3"),
    (lambda i: {**i, "state": {**i["state"], "position": "x"}}, r"trainer state is corrupt \(position = 'x'"),
    (lambda i: {k: v for k, v in i.items() if k != "state"}, "trainer state is corrupt"),
    (lambda i: {**i, "options": {**i["options"], "lr": "abc"}}, "the trainer state holds invalid options"),
    (lambda i: {k: v for k, v in i.items() if k != "rng"}, "trainer state is corrupt"),
    (lambda i: [1, 2], "not a JSON object"),
])
def test_a_forged_trainer_state_is_refused_in_one_line(tmp_path, corpus, capsys, change, message):
    out = tmp_path / "run"
    run(out, corpus)
    forge(out / "checkpoints" / "step-00000006", change)
    rc, err = cli(["--out", str(out), "--resume"], capsys)
    assert rc == 2 and err.count("\n") == 1 and __import__("re").search(message, err), err
