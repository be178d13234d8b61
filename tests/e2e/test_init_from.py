"""`pretrain --init-from DIR`: a new run from another run's weights (fresh optimizer, schedule and
step count), its config and tokenizer from the source, the source recorded; --resume wins when
the run exists."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.hf import load_config
from plmlab.tokenizers import train_tokenizer
from plmlab.train import PretrainOptions, pretrain, read_metrics
from plmlab.train.parallel import Dist
from plmlab.train.pretrain_setup import prepare
from plmlab.train.rundir import RunDir
from plmlab.train.state import read_trainer_info, read_trainer_tensors

TINY = dict(batch_size=4, seq_len=32, eval_batches=1, eval_every=0, sample_tokens=0, progress="none", threads=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished 3-step MLM run of bert-tiny (basic masking)."""
    out = tmp_path_factory.mktemp("init") / "basic"
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(out), preset="bert-tiny", objective="mlm", max_steps=3, save_every=2, **TINY))
    torch.set_num_threads(threads)
    return out


def _state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_step_zero_weights_are_the_source_final_weights(source, tmp_path):
    options = PretrainOptions(out=str(tmp_path / "b"), init_from=str(source), objective="mlm",
                              objective_options={"masking": "phrase"}, max_steps=2, **TINY)
    setup = prepare(options, RunDir(options.out), Dist())
    final = plmlab.load_pretrained(source / "final").state_dict()
    got = setup.model.state_dict()
    assert got.keys() == final.keys()
    for key in final:
        assert torch.equal(got[key], final[key]), key
    assert setup.config.to_dict() == load_config(source / "final").to_dict()
    assert setup.tokenizer.backend.get_vocab() == plmlab.load_tokenizer(source / "final").backend.get_vocab()


def test_a_new_run_has_a_fresh_optimizer_schedule_and_step(source, tmp_path):
    out = tmp_path / "b"
    result = pretrain(PretrainOptions(out=str(out), init_from=str(source), objective="mlm", optimizer="adamw",
                                      max_steps=2, save_every=1, keep_last=0, warmup=1, **TINY))
    records = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["lr"] == pytest.approx(2e-3)  # warmup=1: the peak at step 1, as a new schedule starts
    first = out / "checkpoints" / "step-00000001"
    info = read_trainer_info(first)
    assert info["state"]["step"] == 1
    optimizer_state, _ = read_trainer_tensors(first, info)
    steps = {float(s["step"]) for s in optimizer_state["state"].values()}
    assert steps == {1.0}  # AdamW's own step count starts over (the source's ran 3 steps)
    # the source is recorded: its folder (final/) and, with no manifest there, no hash
    assert result.init_from["folder"] == str((source / "final").resolve())
    assert info["init_from"] == result.init_from and info["options"]["init_from"] == str(source.resolve())
    assert json.loads((out / "summary.json").read_text())["init_from"]["manifest_sha256"] is None


def test_a_checkpoint_source_is_recorded_with_its_manifest_hash(source, tmp_path):
    from plmlab.hf.manifest import sha256_file

    checkpoint = source / "checkpoints" / "step-00000002"
    result = pretrain(PretrainOptions(out=str(tmp_path / "b"), init_from=str(checkpoint), objective="mlm",
                                      max_steps=1, **TINY))
    assert result.init_from["manifest_sha256"] == sha256_file(checkpoint / "manifest.json")


def test_a_given_config_must_agree_on_the_architecture(source, tmp_path):
    base = dict(out=str(tmp_path / "b"), init_from=str(source), objective="mlm", max_steps=1, **TINY)
    with pytest.raises(PlmlabError, match="n_layers=2, but the given config has n_layers=3"):
        pretrain(PretrainOptions(**base, overrides={"n_layers": 3}))
    with pytest.raises(PlmlabError, match="vocab_size"):
        pretrain(PretrainOptions(**base, preset="bert-mini"))
    setup = prepare(PretrainOptions(**base, preset="bert-tiny", overrides={"dropout": 0.2}),
                    RunDir(base["out"]), Dist())  # the same architecture: fine; dropout may change
    assert setup.config.dropout == 0.2


def test_a_given_tokenizer_must_have_the_source_vocabulary(source, tmp_path):
    other = train_tokenizer(["a tiny corpus of other words"] * 20, "bert", 300)
    other.save(tmp_path / "tok")
    proc = subprocess.run([sys.executable, "-m", "plmlab", "pretrain", "--init-from", str(source), "--objective", "mlm",
                           "--tokenizer", str(tmp_path / "tok"), "--out", str(tmp_path / "b"), "--max-steps", "1"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "another vocabulary" in proc.stderr and "Traceback" not in proc.stderr
    # the source's own tokenizer, given explicitly, is fine
    setup = prepare(PretrainOptions(out=str(tmp_path / "c"), init_from=str(source), objective="mlm",
                                    tokenizer=str(source / "final"), max_steps=1, **TINY),
                    RunDir(tmp_path / "c"), Dist())
    assert setup.tokenizer.vocab_size == setup.config.vocab_size


def test_init_from_with_resume_resumes_an_existing_run_else_starts_one(source, tmp_path):
    out = tmp_path / "b"
    args = dict(out=str(out), init_from=str(source), objective="mlm", max_steps=2, save_every=1, **TINY)
    first = pretrain(PretrainOptions(**args, resume=True))  # no run yet: a new one, from the source
    assert first.resumed_from is None and first.init_from["path"] == str(source)
    longer = pretrain(PretrainOptions(**{**args, "max_steps": 3}, resume=True))  # the run exists: resume wins
    assert longer.resumed_from == 2 and longer.step == 3
    assert longer.init_from == first.init_from  # the resumed run keeps the source it started from
    with pytest.raises(PlmlabError, match="a resumed run keeps its settings, but --init-from"):
        pretrain(PretrainOptions(**{**args, "init_from": str(source / "checkpoints"), "max_steps": 4}, resume=True))


def test_a_source_without_weights_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlmlabError, match="no config.json"):
        pretrain(PretrainOptions(out=str(tmp_path / "b"), init_from=str(tmp_path / "empty"), **TINY))


def test_cli_init_from_with_another_architecture_is_one_line(source, tmp_path, capsys):
    from plmlab.cli import main

    code = main(["pretrain", "--init-from", str(source), "--objective", "mlm", "--preset", "bert-tiny",
                 "--d-model", "48", "--out", str(tmp_path / "b"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"plmlab: error: --init-from {source}: the model there has d_model=")
    assert not (tmp_path / "b" / "metrics.jsonl").exists()
