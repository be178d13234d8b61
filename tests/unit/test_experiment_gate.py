"""The training gate: every language-model run records the unigram baseline of its validation
targets, and a study whose models all ended within GATE_MARGIN of it reports "not tested at this
scale" instead of its verdict (experiments/report.py)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from plmlab.experiments import EXPERIMENTS, Arm, Experiment, Summary, run_experiment, stats
from plmlab.experiments.harness import TrainSpec, train, unigram_loss
from plmlab.experiments.report import GATE_MARGIN, gated
from plmlab.experiments.tables import lm_record, table, values
from plmlab.train.baselines import K_GRID


@pytest.fixture
def fake_batches(monkeypatch):
    """Training batches come from the fake objective's `train_targets` (the real ones need data)."""
    monkeypatch.setattr("plmlab.train.baselines.fixed_batches",
                        lambda objective, *_: [{"labels": torch.tensor([objective.train_targets])}])


def _setup(labels, extra=None, needs_eos=True, train_targets=(1, 2, 3)):
    """A PretrainSetup's parts that the baseline reads: two training documents [0 1] and [1 2],
    EOS id 3, one validation batch, the objective's training targets."""
    batch = {"input_ids": torch.zeros(1, len(labels), dtype=torch.long), "labels": torch.tensor([labels]), **(extra or {})}
    return SimpleNamespace(task=SimpleNamespace(val_batches=[batch]),
                           train_data=SimpleNamespace(tokens=np.array([0, 1, 1, 2], dtype=np.uint16),
                                                      doc_offsets=np.array([0, 2, 4])),
                           tokenizer=SimpleNamespace(eos_id=3, vocab_size=4),
                           objective=SimpleNamespace(needs_eos=needs_eos, train_targets=list(train_targets)),
                           options=SimpleNamespace(seed=0, batch_size=1))


def test_unigram_loss_by_hand(fake_batches):
    # stream 0 1 EOS 1 2 EOS: counts 1, 2, 1, 2 of N = 6 over V = 4; targets 1, 1, 2 (-100 ignored)
    def loss(k):
        return -(2 * math.log((2 + k) / (6 + 4 * k)) + math.log((1 + k) / (6 + 4 * k))) / 3
    assert unigram_loss(_setup([1, 1, 2, -100])) == pytest.approx(min(loss(k) for k in K_GRID), abs=1e-12)
    # without EOS in the training stream (a masked LM, targets text only): counts 1, 2, 1, 0 of N = 4
    def masked(k):
        return -(2 * math.log((2 + k) / (4 + 4 * k)) + math.log((1 + k) / (4 + 4 * k))) / 3
    setup = _setup([1, 1, 2, -100], needs_eos=False, train_targets=[0, 1, 2])
    assert unigram_loss(setup) == pytest.approx(min(masked(k) for k in K_GRID), abs=1e-12)


def test_targets_count_the_ids_the_objective_inserts(fake_batches):
    # T5-style: id 5 (a sentinel) never occurs in the text but is half of the training targets
    # [5 1 5 2]; it joins the stream [0 1 1 2] 2 * 4 / 2 = 4 times: counts 1, 2, 1, 0, 0, 4 of N = 8
    setup = _setup([5, 1, 2], needs_eos=False, train_targets=[5, 1, 5, 2])
    setup.task.val_batches[0]["input_ids"] = torch.zeros(1, 7, dtype=torch.long)  # an encoder's inputs
    setup.tokenizer.vocab_size = 6
    def loss(k):
        return -sum(math.log((c + k) / (8 + 6 * k)) for c in (4, 2, 1)) / 3
    assert unigram_loss(setup) == pytest.approx(min(loss(k) for k in K_GRID), abs=1e-12)


def test_no_unigram_loss_where_val_loss_is_not_a_token_loss(fake_batches):
    # NSP / SOP add a pair label's loss to the tokens': the baseline would not compare
    assert unigram_loss(_setup([1, 2], {"next_sentence_label": torch.tensor([0])})) is None
    assert unigram_loss(_setup([-100, -100])) is None


def test_a_trained_run_records_its_unigram_loss(tmp_path):
    trained = train(TrainSpec(preset="gpt-tiny", steps=1, batch_size=2, seq_len=16, eval_batches=1), tmp_path / "run")
    record = lm_record(trained)["metrics"]
    setup = trained.setup
    stream = np.insert(np.asarray(setup.train_data.tokens, dtype=np.int64), setup.train_data.doc_offsets[1:],
                       setup.tokenizer.eos_id)
    labels = setup.task.val_batches[0]["labels"].flatten().numpy()
    targets = labels[labels != -100]
    counts = np.bincount(stream, minlength=setup.tokenizer.vocab_size)
    vocab = max(setup.tokenizer.vocab_size, int(stream.max()) + 1)
    by_hand = min(-np.mean(np.log((counts[targets] + k) / (len(stream) + k * vocab))) for k in K_GRID)
    assert record["unigram_loss"] == pytest.approx(by_hand, rel=1e-9)
    assert 3.0 < record["unigram_loss"] < record["val_loss"]  # one step: still above the plateau


def _runs(a_val, b_val, unigram=6.4):
    return {arm: [{"metrics": {"val_loss": v + 0.02 * s - 0.01, "unigram_loss": unigram}} for s in range(2)]
            for arm, v in (("a", a_val), ("b", b_val))}


def _experiment(**fields):
    return Experiment(name="fake-lm", claim="a beats b", paper="Nobody 2024", runtime="instant",
                      arms=lambda scale: [Arm("a", {"val": 6.3}), Arm("b", {"val": 6.35})],
                      run=_run, summarize=_summarize, **fields)


def _summary(runs):
    return Summary(["arm"], [[a] for a in runs], "a and b tie on val loss (within noise)")


def test_gate_turns_a_plateau_verdict_into_not_tested():
    runs = _runs(6.3, 6.35)
    text = gated(_experiment(), _summary(runs), runs, "default").verdict
    assert text.startswith("not tested at this scale: the models ended at 6.30–6.35 nats, the unigram baseline "
                           "of their tokenizer is 6.40 nats"), text
    assert "--scale large` is the run that would test it" in text and f"{GATE_MARGIN} nats below" in text
    assert "larger model than `--scale large`" in gated(_experiment(), _summary(runs), runs, "large").verdict


def test_gate_leaves_a_verdict_alone_when_one_arm_is_past_the_margin():
    runs = _runs(6.4 - GATE_MARGIN - 0.02, 6.38)  # a's mean is GATE_MARGIN + 0.02 below the baseline
    assert gated(_experiment(), _summary(runs), runs, "default") == _summary(runs)
    # a diverged run is left out of its arm's mean; without loss metrics the gate does not apply
    runs["a"].append({"metrics": {"val_loss": float("nan"), "unigram_loss": 6.4}})
    assert gated(_experiment(), _summary(runs), runs, "default") == _summary(runs)
    timing = {arm: [{"metrics": {"step_seconds": 0.1}}] for arm in ("a", "b")}
    assert gated(_experiment(), _summary(timing), timing, "default") == _summary(timing)


def test_a_study_that_opts_out_keeps_its_verdict():
    runs = _runs(6.3, 6.35)
    assert gated(_experiment(loss_gate=False), _summary(runs), runs, "default").verdict == _summary(runs).verdict


def _run(arm, seed, scale, workdir):
    return {"metrics": {"val_loss": arm.params["val"] + 0.02 * seed - 0.01, "unigram_loss": 6.4}, "curves": {}}


def _summarize(runs):
    columns, rows = table(runs, [("val_loss", "val loss", 3)])
    return Summary(columns, rows, stats.compare("a", values(runs, "a", "val_loss"), "b", values(runs, "b", "val_loss"),
                                                "val loss"))


def test_a_study_report_shows_the_gated_verdict_and_keeps_the_table(monkeypatch, tmp_path):
    monkeypatch.setitem(EXPERIMENTS, "fake-lm", _experiment())
    folder = run_experiment("fake-lm", scale="smoke", seeds=2, out=tmp_path, log=lambda *_: None)
    report = (folder / "report.md").read_text()
    results = json.loads((folder / "results.json").read_text())
    assert "**Verdict.** not tested at this scale: the models ended at 6.30–6.35 nats, the unigram baseline" in report
    assert "| a | 6.300 ± 0.127 |" in report and results["verdict"].startswith("not tested at this scale")
    assert results["ungated_verdict"].startswith("a beats b on val loss")  # what the numbers alone said
