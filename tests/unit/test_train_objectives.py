"""Objectives through the trainer: options (library and CLI), static masking in the data cursor,
batches by tokens for variable-length formats (exact on resume), accuracy metrics, demos."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from plmlab.cli import build_parser, main
from plmlab.cli.pretrain import options_from_args
from plmlab.data import build_token_data
from plmlab.errors import PlmlabError
from plmlab.objectives.base import token_accuracy
from plmlab.tokenizers import train_tokenizer
from plmlab.train import PretrainOptions, pretrain, read_metrics
from plmlab.train.batching import TokenBatchOrder, make_order
from plmlab.train.data import make_batch
from plmlab.train.loop import TrainState
from plmlab.train.task import Mean, add_metrics, metric_values
from plmlab.train.objective_setup import accepted_options, build_objective, parse_glm_rates, read_mixture

WORDS = "the a parser module reads writes returns value file error list token cache builds".split()
RUN = dict(batch_size=4, seq_len=32, eval_every=3, eval_batches=2, lr=3e-3, warmup=1, seed=3, threads=1,
           progress="none", sample_tokens=0)


def write_corpus(path: Path, docs: int = 40, seed: int = 1) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(docs):
        n = rng.randint(1, 7)  # documents of different lengths: doc-sentences examples vary
        lines.append(json.dumps({"text": " ".join(" ".join(rng.choices(WORDS, k=rng.randint(4, 10))).capitalize() + "."
                                                   for _ in range(n))}))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("objcorpus") / "corpus.jsonl")


@pytest.fixture(scope="module")
def bert_data(tmp_path_factory):
    docs = [[" ".join(random.Random(d * 7 + s).choices(WORDS, k=8)) + "." for s in range(1 + d % 5)]
            for d in range(30)]
    tok = train_tokenizer([s for d in docs for s in d], "bert", vocab_size=200)
    train, _ = build_token_data(docs, tok, cache_dir=tmp_path_factory.mktemp("shards"))
    return tok, train


def parse(argv: list[str]):
    return options_from_args(build_parser().parse_args(["pretrain", "--out", "x", *argv]))


# --- 1. options -------------------------------------------------------------------------------------
def test_cli_flags_and_objective_set_become_objective_options(tmp_path):
    o = parse(["--objective", "mlm", "--masking", "static", "--static-copies", "2", "--whole-word", "--ngram", "3",
               "--mask-prob", "0.2", "--input-format", "doc-sentences",
               "--objective-set", "replace_probs=[0.7,0.2,0.1]",
               "--objective-set", "short-seq-prob=0.05"])
    assert o.objective_options == {"masking": "static", "static_copies": 2, "whole_word": True, "ngram": 3,
                                   "mask_prob": 0.2, "input_format": "doc-sentences",
                                   "replace_probs": [0.7, 0.2, 0.1], "short_seq_prob": 0.05}
    o = parse(["--objective", "span-corruption", "--noise-density", "0.3", "--mean-span-length", "2"])
    assert o.objective_options == {"noise_density": 0.3, "mean_noise_span_length": 2.0}
    assert parse([]).objective_options is None  # nothing given: the run's (or the default) stays
    o = parse(["--objective", "glm-mix", "--glm-rates", "mask=0.6,smask=0.4,gmask=0"])
    assert o.objective_options == {"mask_rate": 0.6, "smask_rate": 0.4, "gmask_rate": 0.0}
    assert parse_glm_rates('{"mask": 1}') == {"mask_rate": 1.0}
    with pytest.raises(PlmlabError, match="modes are mask, smask and gmask"):
        parse_glm_rates("bert=1")


def test_mixture_file_resolves_task_paths(tmp_path):
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "sst.jsonl").write_text(json.dumps({"input": "good film", "target": "positive"}) + "\n")
    spec = tmp_path / "mix.json"
    spec.write_text(json.dumps({"span_rate": 2, "tasks": [{"path": "tasks/sst.jsonl", "rate": 1, "prefix": "sst2: "}]}))
    o = parse(["--objective", "mixture", "--mixture", str(spec)])
    assert o.objective_options["span_rate"] == 2
    assert o.objective_options["tasks"][0]["path"] == str((tmp_path / "tasks" / "sst.jsonl").resolve())
    spec.write_text(json.dumps([{"path": "tasks/sst.jsonl"}]))  # a bare list of tasks
    assert read_mixture(str(spec))["tasks"][0]["path"].endswith("sst.jsonl")
    spec.write_text('{"tasks": 3}')
    with pytest.raises(PlmlabError, match="expected a list of tasks"):
        read_mixture(str(spec))


def test_accepted_options_come_from_the_declared_options():
    from plmlab.objectives import OBJECTIVES

    mlm_options = {"masking", "static_copies", "mask_prob", "whole_word", "ngram", "input_format"}
    assert mlm_options <= accepted_options(OBJECTIVES["mlm+nsp"])
    assert {"noise_density", "mean_noise_span_length", "tasks", "span_rate"} <= accepted_options(OBJECTIVES["mixture"])
    assert {"mask_rate", "smask_rate", "gmask_rate"} <= accepted_options(OBJECTIVES["glm-mix"])
    assert accepted_options(OBJECTIVES["clm"]) == {"languages", "lang"}  # XLM's language table (issue 15)


def test_unknown_option_is_a_one_line_error(tmp_path, capsys, corpus):
    code = main(["pretrain", "--preset", "bert-tiny", "--objective", "mlm", "--out", str(tmp_path / "r"),
                 "--corpus", str(corpus), "--noise-density", "0.3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("plmlab: error: objective mlm has no option noise_density (its options: input_format,")
    assert not (tmp_path / "r" / "metrics.jsonl").exists()
    code = main(["pretrain", "--preset", "gpt-tiny", "--out", str(tmp_path / "r"), "--objective-set", "foo=1"])
    assert code == 2 and "objective clm has no option foo (its options: lang, languages)" in capsys.readouterr().err


def test_objective_options_are_stored_and_checked_on_resume(tmp_path, corpus):
    out = tmp_path / "run"
    opts = dict(preset="bert-tiny", objective="mlm", corpus=[str(corpus)], max_steps=2, **RUN)
    pretrain(PretrainOptions(out=str(out), objective_options={"mask_prob": 0.3}, **opts))
    state = json.loads(next((out / "checkpoints").glob("step-*/trainer/state.json")).read_text())
    assert state["options"]["objective_options"] == {"mask_prob": 0.3}
    with pytest.raises(PlmlabError, match="objective-options"):
        pretrain(PretrainOptions(out=str(out), resume=True, objective_options={"mask_prob": 0.2}))
    result = pretrain(PretrainOptions(out=str(out), resume=True, max_steps=3))  # the run's options kept
    assert result.step == 3


# --- 2. static masking ------------------------------------------------------------------------------
def _masks(objective, data, index: int, epochs) -> list[np.ndarray]:
    return [make_batch(objective, data, 5, [(e, index)])["labels"][0].numpy() for e in epochs]


def test_static_masking_repeats_every_copies_epochs_in_the_trainer(bert_data):
    tok, data = bert_data
    static = build_objective("mlm", tok, 32, {"masking": "static", "static_copies": 2})
    for index in (0, 3, 7):
        e0, e1, e2, e3 = _masks(static, data, index, range(4))
        assert np.array_equal(e0, e2) and np.array_equal(e1, e3)
        assert not np.array_equal(e0, e1)
    dynamic = build_objective("mlm", tok, 32, {"masking": "dynamic"})
    masks = _masks(dynamic, data, 3, range(4))
    assert all(not np.array_equal(masks[a], masks[b]) for a in range(4) for b in range(a + 1, 4))


# --- 3. batches by tokens ----------------------------------------------------------------------------
def test_token_batch_order_is_deterministic_and_resumable():
    lengths = np.random.default_rng(0).integers(3, 40, size=57)
    order = TokenBatchOrder(lengths, 100, seed=4)
    batches = [order.take() for _ in range(30)]  # crosses epochs
    seen = [i for b in batches for _, i in b]
    assert all(sum(lengths[i] for _, i in b) <= 100 or len(b) == 1 for b in batches)
    assert all(len({e for e, _ in b}) == 1 for b in batches)  # never straddles epochs
    first_epoch = [i for b in batches for e, i in b if e == 0]
    assert sorted(first_epoch) == list(range(57))
    assert len(seen) > 57
    # a cursor saved after batch k continues with batch k + 1
    replay = TokenBatchOrder(lengths, 100, seed=4)
    for k, b in enumerate(batches[:-1]):
        assert replay.take() == b
        resumed = TokenBatchOrder(lengths, 100, seed=4, epoch=replay.epoch, position=replay.position)
        assert resumed.take() == batches[k + 1]
    # a global micro-batch of 2 x batch_size examples (DDP, 2 ranks): two token batches joined
    joined = TokenBatchOrder(lengths, 100, seed=4, batch_size=3)
    assert joined.take(3) == batches[0] and joined.take(6) == batches[1] + batches[2]
    # OOM back-off (micro-batch halved, grad_accum doubled): each token batch in two halves
    halves = TokenBatchOrder(lengths, 100, seed=4, batch_size=4)
    assert halves.take(2) + halves.take(2) == batches[0]
    first = halves.take(2)
    halves.epoch, halves.position = 0, len(batches[0])  # the back-off's retry rewinds the cursor
    assert halves.take(2) == first and first + halves.take(2) == batches[1]
    assert halves.take(2) + halves.take(2) == batches[2]
    with pytest.raises(PlmlabError, match="batch boundary"):
        TokenBatchOrder(lengths, 100, seed=4, position=1).take()


def test_variable_length_objective_batches_by_tokens(bert_data):
    tok, data = bert_data
    o = PretrainOptions(out="x", batch_size=4, seq_len=48, seed=0)
    doc = build_objective("mlm", tok, 48, {"input_format": "doc-sentences"})
    full = build_objective("mlm", tok, 48, {"input_format": "full-sentences"})
    assert isinstance(make_order(doc, data, o, TrainState()), TokenBatchOrder)
    assert not isinstance(make_order(full, data, o, TrainState()), TokenBatchOrder)
    order = make_order(doc, data, o, TrainState())
    lengths = doc.example_lengths(data)
    picks = [order.take() for _ in range(5)]
    assert max(len(p) for p in picks) > 4  # short documents: more examples per batch, <= 4 * 48 tokens each
    for p in picks:
        batch = make_batch(doc, data, 0, p)
        assert int(batch["attention_mask"].sum()) == sum(int(lengths[i]) for _, i in p) <= 4 * 48


def test_doc_sentences_run_resumes_exactly(tmp_path, corpus):
    opts = dict(preset="roberta-tiny", objective="mlm", objective_options={"input_format": "doc-sentences"},
                corpus=[str(corpus)], save_every=3, overrides={"dropout": 0.1}, **RUN)
    pretrain(PretrainOptions(out=str(tmp_path / "ref"), max_steps=6, **opts))
    # the run as a kill after step 4 leaves it: step 3's checkpoint, metrics up to step 4
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "ref", cut)
    for name in ("checkpoints/step-00000006", "final", "summary.json"):
        shutil.rmtree(cut / name) if (cut / name).is_dir() else (cut / name).unlink()
    lines = (cut / "metrics.jsonl").read_text().splitlines()
    (cut / "metrics.jsonl").write_text("\n".join(lines[:4]) + "\n")
    result = pretrain(PretrainOptions(out=str(cut), resume=True))
    assert result.resumed_from == 3 and result.step == 6
    ref, cut = read_metrics(tmp_path / "ref" / "metrics.jsonl"), read_metrics(tmp_path / "cut" / "metrics.jsonl")
    assert [r["loss"] for r in ref] == [r["loss"] for r in cut]
    assert [r["tokens"] for r in ref] == [r["tokens"] for r in cut]
    per_step = np.diff([0] + [r["tokens"] for r in ref])
    assert len(set(per_step.tolist())) > 1  # batches by tokens: the example count varies


# --- 4. metrics -----------------------------------------------------------------------------------
def test_token_accuracy_and_count_weighted_average():
    class Out:
        logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])

    out = token_accuracy({"labels": torch.tensor([[1, 1, -100]])}, Out())
    assert out == {"token_accuracy": Mean(1, 2)}
    total = add_metrics({}, {"mlm_accuracy": Mean(3, 3), "nsp_accuracy": Mean(0, 1)})
    add_metrics(total, {"mlm_accuracy": Mean(0, 1), "nsp_accuracy": Mean(3, 3), "sop_accuracy": Mean(0, 0)})
    assert metric_values(total, "val_") == {"val_mlm_accuracy": 0.75, "val_nsp_accuracy": 0.75}
