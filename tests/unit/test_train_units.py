"""Trainer building blocks without a training run: schedule, AdamW groups, state without
pickle, resumable example order, crash-safe checkpoint folders, metrics, baselines."""

from __future__ import annotations

import errno
import json
import math
import random

import numpy as np
import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.train import lr_at, make_optimizer, param_groups
from plmlab.train.baselines import ngram_baselines, stream_with_eos
from plmlab.hf.manifest import CheckpointError, latest_complete, list_checkpoints, verify
from plmlab.train.checkpoint import write_checkpoint
from plmlab.train.data import ExampleOrder
from plmlab.train.metrics import MetricsLog, read_metrics
from plmlab.train.options import PretrainOptions
from plmlab.train.state import flatten, rng_state, set_rng_state, unflatten


# ------------------------------------------------------------------ learning rate and AdamW
def test_lr_schedule_warmup_then_cosine_to_min():
    kw = dict(lr=1e-3, min_lr=1e-4, warmup=10, total=110)
    assert lr_at(1, **kw) == pytest.approx(1e-4)
    assert lr_at(5, **kw) == pytest.approx(5e-4)
    assert lr_at(10, **kw) == pytest.approx(1e-3)
    assert lr_at(60, **kw) == pytest.approx(0.5 * (1e-3 + 1e-4))  # half-way down the cosine
    assert lr_at(110, **kw) == pytest.approx(1e-4)
    assert lr_at(500, **kw) == pytest.approx(1e-4)
    values = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(values, values[1:]))  # monotone after warmup
    assert lr_at(1, lr=1e-3, min_lr=0.0, warmup=0, total=10) == pytest.approx(1e-3 * 0.5 * (1 + math.cos(math.pi / 10)))


def test_weight_decay_only_on_matrices_and_tied_weights_once():
    model = plmlab.build_model("gpt-tiny")
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for g in (decay, no_decay) for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))  # the tied head is not twice
    assert sum(p.numel() for p in decay["params"] + no_decay["params"]) == model.num_parameters()
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("norm" in names[id(p)] or names[id(p)].endswith("bias") for p in no_decay["params"])
    optimizer = make_optimizer(model, 1e-3, 0.1)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]


# ------------------------------------------------------------------ state without pickle
def test_optimizer_and_rng_state_round_trip_through_json_and_tensors():
    model = plmlab.build_model("gpt-tiny")
    optimizer = make_optimizer(model, 1e-3, 0.1)
    model(input_ids=torch.randint(0, 100, (2, 8)), labels=torch.randint(0, 100, (2, 8))).loss.backward()
    optimizer.step()
    tensors: dict = {}
    skeleton = flatten({"optimizer": optimizer.state_dict(), "rng": rng_state()}, tensors)
    expected = (random.random(), np.random.rand(), torch.rand(3))
    skeleton = json.loads(json.dumps(skeleton))  # what the checkpoint's JSON gives back
    restored = unflatten(skeleton, tensors)
    fresh = make_optimizer(plmlab.build_model("gpt-tiny"), 1e-3, 0.1)
    fresh.load_state_dict(restored["optimizer"])
    a, b = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert a.keys() == b.keys() and all(torch.equal(a[i][k], b[i][k]) for i in a for k in a[i])
    set_rng_state(restored["rng"])
    assert (random.random(), np.random.rand()) == expected[:2] and torch.equal(torch.rand(3), expected[2])


# ------------------------------------------------------------------ data order
def test_example_order_is_a_resumable_cursor_over_seeded_permutations():
    whole = ExampleOrder(10, seed=3).take(25)
    assert sorted(i for e, i in whole[:10]) == list(range(10)) and {e for e, _ in whole[20:]} == {2}
    assert [i for _, i in whole[:10]] != [i for _, i in whole[10:20]]  # each epoch reshuffles
    first = ExampleOrder(10, seed=3)
    head = first.take(7) + first.take(6)
    tail = ExampleOrder(10, 3, first.epoch, first.position).take(12)  # resumed from the cursor
    assert head + tail == whole
    assert ExampleOrder(10, seed=4).take(10) != whole[:10]


# ------------------------------------------------------------------ checkpoint folders
def write_files(contents: dict[str, bytes]):
    def write(folder):
        for name, data in contents.items():
            (folder / name).write_bytes(data)
    return write


def test_checkpoint_commit_verify_and_prune(tmp_path):
    for step in (3, 6, 9):
        write_checkpoint(tmp_path, step, write_files({"a.bin": b"x" * step, "trainer_state.json": b"{}"}), keep_last=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [6, 9]
    assert not list(tmp_path.glob(".tmp-*"))
    verify(tmp_path / "step-00000009", required=("a.bin",))
    manifest = json.loads((tmp_path / "step-00000009" / "manifest.json").read_text())
    assert manifest["files"]["a.bin"]["size"] == 9 and len(manifest["files"]["a.bin"]["sha256"]) == 64


@pytest.mark.parametrize("damage", ["truncate", "alter", "delete", "no-manifest"])
def test_damaged_checkpoint_is_refused_and_the_previous_one_used(tmp_path, damage):
    for step in (3, 6):
        write_checkpoint(tmp_path, step, write_files({"w.bin": bytes(range(200))}))
    target = tmp_path / "step-00000006" / ("manifest.json" if damage == "no-manifest" else "w.bin")
    if damage == "truncate":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "alter":
        target.write_bytes(bytes([7]) + target.read_bytes()[1:])
    else:
        target.unlink()
    with pytest.raises(CheckpointError):
        verify(tmp_path / "step-00000006")
    skipped = []
    assert latest_complete(tmp_path, on_skip=skipped.append) == (3, tmp_path / "step-00000003")
    assert len(skipped) == 1 and "step-00000006" in skipped[0]


def test_failed_save_leaves_previous_checkpoint_and_no_temp_folder(tmp_path):
    write_checkpoint(tmp_path, 3, write_files({"w.bin": b"ok"}))

    def disk_full(folder):
        (folder / "w.bin").write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(PlmlabError, match=r"no space left on device; the previous checkpoint step-00000003 is intact"):
        write_checkpoint(tmp_path, 6, disk_full)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [3] and not list(tmp_path.glob(".tmp-*"))
    verify(tmp_path / "step-00000003")


# ------------------------------------------------------------------ metrics, options, baselines
def test_metrics_log_truncates_to_the_checkpoint_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 6):
        log.write({"step": step, "loss": float("nan") if step == 2 else 1.0 / step})
    log.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')  # a record cut short by a kill
    MetricsLog(path, keep_until=3).close()
    records = read_metrics(path)
    assert [r["step"] for r in records] == [1, 2, 3] and records[1]["loss"] == "nan"


def test_options_resolve_defaults_and_resume_keeps_the_run_settings():
    o = PretrainOptions(out="x", preset="gpt-tiny", lr=1e-2).resolved()
    assert o.min_lr == pytest.approx(1e-3) and o.warmup == min(100, o.max_steps // 10)
    stored = o.to_dict()
    resumed = PretrainOptions(out="x", resume=True, max_steps=7).resolved(stored)
    assert resumed.lr == 1e-2 and resumed.max_steps == 7  # max_steps may change on resume
    with pytest.raises(PlmlabError, match="--lr 0.5 .the run has 0.01."):
        PretrainOptions(out="x", resume=True, lr=0.5).resolved(stored)
    with pytest.raises(PlmlabError, match="--batch-size must be positive"):
        PretrainOptions(out="x", batch_size=0).resolved()
    with pytest.raises(PlmlabError, match="--lr must be a finite"):
        PretrainOptions(out="x", lr=float("inf")).resolved()


def test_ngram_baselines_match_hand_computed_add_k():
    stream = stream_with_eos(np.array([1, 2, 1, 2, 3], dtype=np.uint16), np.array([0, 2, 5]), eos=0)
    assert stream.tolist() == [1, 2, 0, 1, 2, 3, 0]
    contexts, targets = np.array([1, 2, 3]), np.array([2, 3, 1])
    b = ngram_baselines(stream, contexts, targets, vocab=4)
    k = b["bigram"]["k"]
    # counts: c(1,2)=2 of c(1)=2; c(2,3)=1 of c(2)=2; c(3,1)=0 of c(3)=1
    expected = -np.mean(np.log([(2 + k) / (2 + 4 * k), (1 + k) / (2 + 4 * k), k / (1 + 4 * k)]))
    assert b["bigram"]["loss"] == pytest.approx(expected)
    k = b["unigram"]["k"]
    expected = -np.mean(np.log([(2 + k) / (7 + 4 * k), (1 + k) / (7 + 4 * k), (2 + k) / (7 + 4 * k)]))
    assert b["unigram"]["loss"] == pytest.approx(expected) and b["unigram"]["ppl"] == pytest.approx(math.exp(expected))


# ------------------------------------------------------------------ set-up
def test_config_layers_preset_then_file_then_overrides_then_vocab(tmp_path):
    from plmlab.train.setup import build_config

    (tmp_path / "c.json").write_text('{"d_model": 32, "n_heads": 2, "n_layers": 3}')
    (tmp_path / "c.yaml").write_text("d_model: 48\nn_heads: 3\n")
    o = PretrainOptions(out="x", preset="gpt-tiny", config_file=str(tmp_path / "c.json"), overrides={"n_layers": 1},
                        vocab_size=512).resolved()
    c = build_config(o)
    assert (c.d_model, c.n_heads, c.n_layers, c.vocab_size, c.max_positions) == (32, 2, 1, 512, 128)
    assert build_config(PretrainOptions(out="x", preset="gpt-tiny", config_file=str(tmp_path / "c.yaml")).resolved()).d_model == 48
    (tmp_path / "bad.json").write_text('{"d_modle": 32}')
    with pytest.raises(PlmlabError, match="unknown field.*d_modle"):
        build_config(PretrainOptions(out="x", preset="gpt-tiny", config_file=str(tmp_path / "bad.json")).resolved())


def test_a_run_directory_is_locked_while_a_run_uses_it(tmp_path):
    from plmlab.train.rundir import RunLock

    with RunLock(tmp_path):
        with pytest.raises(PlmlabError, match="another plmlab process is training in"):
            with RunLock(tmp_path):
                pass
    with RunLock(tmp_path):  # released
        pass


def test_a_run_that_fails_takes_back_the_folders_and_lock_it_made(tmp_path):
    from plmlab.train.rundir import RunLock

    with pytest.raises(PlmlabError):
        with RunLock(tmp_path / "new" / "run"):
            raise PlmlabError("refused")
    assert list(tmp_path.iterdir()) == []  # new/ and new/run/ went with the lock
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "notes.txt").write_text("mine")
    with pytest.raises(PlmlabError):
        with RunLock(tmp_path / "old"):
            raise PlmlabError("refused")
    assert [p.name for p in (tmp_path / "old").iterdir()] == ["notes.txt"]  # as it was
    with RunLock(tmp_path / "done"):
        (tmp_path / "done" / "metrics.jsonl").write_text("")
    with pytest.raises(PlmlabError):
        with RunLock(tmp_path / "done"):  # a finished run's .lock is not this run's to remove
            raise PlmlabError("refused")
    assert sorted(p.name for p in (tmp_path / "done").iterdir()) == [".lock", "metrics.jsonl"]
