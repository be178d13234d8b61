"""Commands that write one folder (issue 24): `merge-lora` and `tokenizer train` follow the
run-directory rules (train/rundir.write_folder) -- no silent overwrite, never over a model's
tokenizer or a run that is training, nothing non-finite written, a failed write leaves what was
there -- and bad adapter configs are one line."""

from __future__ import annotations

import errno
import json
import os

import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.hf.peft import save_adapter
from plmlab.nn.lora import lora_layers
from plmlab.tokenizers import train_tokenizer
from plmlab.train.lora import LoraOptions, apply_lora
from plmlab.train.rundir import RunLock

TEXTS = ["the model learns words from text and says hello"] * 40


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """(a gpt-tiny base directory with its tokenizer, a rank-2 adapter of it)."""
    root = tmp_path_factory.mktemp("pair")
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-tiny", vocab_size=300)
    plmlab.save_pretrained(model, root / "base", tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    adapted = plmlab.load_pretrained(root / "base")
    apply_lora(adapted, LoraOptions(r=2, alpha=4))
    with torch.no_grad():
        for layer in lora_layers(adapted).values():
            layer.lora_B.normal_(0, 0.1)
    save_adapter(adapted, root / "adapter")
    return root / "base", root / "adapter"


def merge(pair, out, *extra):
    return main(["merge-lora", "--model", str(pair[0]), "--adapter", str(pair[1]), "--out", str(out), *extra])


def test_merge_lora_refuses_an_existing_model_without_overwrite(pair, tmp_path, capsys):
    out = tmp_path / "merged"
    assert merge(pair, out) == 0
    before = (out / "model.safetensors").read_bytes()
    assert merge(pair, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists; pass --overwrite" in err
    assert (out / "model.safetensors").read_bytes() == before
    assert merge(pair, out, "--overwrite") == 0


def test_merge_lora_waits_for_no_run_it_would_write_into(pair, tmp_path, capsys):
    run = tmp_path / "run"
    with RunLock(run):  # a training run holds runs/x: neither runs/x nor runs/x/final may be written
        for out in (run, run / "final"):
            assert merge(pair, out, "--overwrite") == 2
            assert "another plmlab process is training in" in capsys.readouterr().err
            assert not (run / "final").exists()
    assert merge(pair, run / "final") == 0  # once the run is gone


@pytest.mark.parametrize("edit, needle", [
    ({"lora_alpha": float("nan")}, "lora_alpha for .* is nan; expected a finite number"),
    ({"lora_alpha": "8"}, "expected a finite number"),
    ({"r": 0}, "expected a positive integer"),
    ({"rank_pattern": ["c_attn"]}, "rank_pattern must be an object"),
])
def test_a_bad_adapter_config_is_one_line_and_writes_nothing(pair, tmp_path, capsys, edit, needle):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for f in pair[1].iterdir():
        (adapter / f.name).write_bytes(f.read_bytes())
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **edit}))  # json writes NaN as NaN
    assert merge((pair[0], adapter), tmp_path / "merged") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert __import__("re").search(needle, err), err
    assert not (tmp_path / "merged").exists()


def test_non_finite_adapter_weights_are_refused(pair, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    for f in pair[1].iterdir():
        (adapter / f.name).write_bytes(f.read_bytes())
    tensors = load_file(adapter / "adapter_model.safetensors")
    first = sorted(k for k in tensors if "lora_B" in k)[0]
    tensors[first][0, 0] = float("inf")
    save_file(tensors, adapter / "adapter_model.safetensors")
    assert merge((pair[0], adapter), tmp_path / "merged") == 2
    assert "non-finite weights in 1 tensors" in capsys.readouterr().err
    assert not (tmp_path / "merged").exists()


def test_a_full_disk_during_merge_leaves_what_was_there(pair, tmp_path, capsys, monkeypatch):
    out = tmp_path / "merged"
    assert merge(pair, out) == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("plmlab.hf.io.save_file", full)
    assert merge(pair, out, "--overwrite") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the disk is full" in err
    assert {f.name: f.read_bytes() for f in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []


def tokenizer_train(out, *extra):
    return main(["tokenizer", "train", "--vocab-size", "300", "--out", str(out), *extra])


def test_tokenizer_train_never_replaces_a_models_tokenizer(pair, tmp_path, capsys):
    before = (pair[0] / "tokenizer.json").read_bytes()
    for extra in ((), ("--overwrite",)):
        assert tokenizer_train(pair[0], *extra) == 2
        assert "is a model directory" in capsys.readouterr().err
    assert (pair[0] / "tokenizer.json").read_bytes() == before


def test_tokenizer_train_replaces_a_tokenizer_only_with_overwrite(tmp_path, capsys):
    out = tmp_path / "tok"
    assert tokenizer_train(out) == 0
    assert tokenizer_train(out) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert tokenizer_train(out, "--overwrite", "--style", "bert") == 0
    assert plmlab.load_tokenizer(out).style == "bert"
