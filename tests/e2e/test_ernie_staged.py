"""ERNIE 1.0's staged knowledge masking in one run (`--masking staged`): basic, then phrase, then
entity masking at fractions of the run's steps; the level follows the step the batch is for, so
an interrupted run resumes bit-identically across a stage boundary; `plmlab objective` shows
the stage of a fraction of the run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.objectives import get_objective
from plmlab.objectives.knowledge_masking import StagedMasker
from plmlab.objectives.mlm import MlmOptions
from plmlab.tokenizers import train_tokenizer
from plmlab.train import PretrainOptions, pretrain, read_metrics

SENTENCES = ["The Python Software Foundation maintains the standard library.",
             "Token shards feed the language model.", "New York is far from San Francisco."]
TEXT = " ".join(SENTENCES)
# roberta-tiny: a cased byte-level BPE, so the built-in chunker finds entities
RUN = dict(preset="roberta-tiny", objective="mlm", batch_size=4, seq_len=32, max_steps=6, save_every=2,
           eval_every=3, eval_batches=1, lr=3e-3, warmup=1, seed=3, threads=1, progress="none", sample_tokens=0,
           overrides={"dropout": 0.1})


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(SENTENCES * 3, "roberta", vocab_size=300, min_frequency=1)


def test_the_level_follows_the_step_at_the_stage_fractions(tok):
    masker = StagedMasker(tok, MlmOptions(masking="staged"))
    step = [0]
    masker.follow_steps(lambda: step[0], 6)
    levels = []
    for step[0] in range(1, 7):
        levels.append(masker.level())
    assert levels == [0, 0, 1, 1, 2, 2]  # thirds of 6 steps
    masker = StagedMasker(tok, MlmOptions(masking="staged", stages=(0.5, 0.5)))
    masker.follow_steps(lambda: step[0], 10)
    assert [masker.level() for step[0] in (5, 6)] == [0, 2]  # an empty phrase stage: basic, then entity


def test_each_level_masks_as_its_own_masking_does(tok):
    """Basic = --masking dynamic, phrase = --masking phrase, entity = --masking entity (same draws)."""
    ids = np.asarray([tok.cls_id] + tok.encode(TEXT, add_special_tokens=False) + [tok.sep_id])
    staged = get_objective("mlm")(tok, 64, masking="staged")
    step = [1]
    staged.follow_steps(lambda: step[0], 3)
    for step[0], masking in ((1, "dynamic"), (2, "phrase"), (3, "entity")):
        alone = get_objective("mlm")(tok, 64, masking=masking)
        got = staged.from_ids(ids.tolist(), np.random.default_rng(5))
        want = alone.from_ids(ids.tolist(), np.random.default_rng(5))
        assert np.array_equal(got["input_ids"], want["input_ids"]) and np.array_equal(got["labels"], want["labels"])


def test_objective_view_shows_the_stage(tok, tmp_path, capsys):
    tok.save(tmp_path / "tok")
    seen = {}
    for at in ("0", "0.5", "0.9"):
        assert main(["objective", "mlm", "--text", TEXT, "--tokenizer", str(tmp_path / "tok"), "--json",
                     "--set", "masking=staged", "--set", f"stage_at={at}"]) == 0
        view = json.loads(capsys.readouterr().out)
        seen[at] = view["stage"]
        assert view["stages"] == pytest.approx([1 / 3, 2 / 3])
    assert seen == {"0": "basic", "0.5": "phrase", "0.9": "entity"}
    assert "New York" in [unit[2] for unit in view["knowledge_units"]]


@pytest.mark.parametrize("options, message", [
    ({"masking": "phrase", "stages": [0.2, 0.4]}, "stages and stage_at are for masking=staged"),
    ({"masking": "staged", "stages": [0.6, 0.4]}, "stages must be two fractions"),
    ({"masking": "staged", "stages": [0.5]}, "stages must be two fractions"),
])
def test_bad_stage_options_are_one_line(options, message):
    with pytest.raises(PlmlabError, match=message):
        get_objective("mlm").parse_options(options)


def test_stage_at_is_refused_in_a_run(tmp_path):
    with pytest.raises(PlmlabError, match="stage_at is for plmlab objective's view"):
        pretrain(PretrainOptions(out=str(tmp_path / "r"), objective_options={"masking": "staged", "stage_at": 0.5},
                                 **{**RUN, "max_steps": 1}))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("staged")
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(root / "staged"), objective_options={"masking": "staged"}, **RUN))
    pretrain(PretrainOptions(out=str(root / "dynamic"), objective_options={"masking": "dynamic"}, **RUN))
    torch.set_num_threads(threads)
    return root


def _losses(out: Path) -> list[float]:
    return [r["loss"] for r in read_metrics(out / "metrics.jsonl")]


def test_the_run_switches_from_basic_masking_at_the_first_boundary(reference):
    staged, dynamic = _losses(reference / "staged"), _losses(reference / "dynamic")
    assert staged[:2] == dynamic[:2]  # steps 1-2: basic masking is --masking dynamic, draw for draw
    assert staged[2] != dynamic[2]  # step 3: phrase-level units


def test_interrupted_before_a_boundary_resumes_bit_identically(reference, tmp_path):
    out = tmp_path / "cut"
    args = [sys.executable, "-m", "plmlab", "pretrain", "--out", str(out), "--masking", "staged", "--dropout=0.1"]
    for key, value in RUN.items():
        if key != "overrides":
            args += [f"--{key.replace('_', '-')}", str(value)]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "PLMLAB_TEST_FAULT": "sigint@2",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    assert proc.returncode == 130, proc.stderr  # SIGINT: the step finished, a checkpoint saved, stopped
    assert [r["step"] for r in read_metrics(out / "metrics.jsonl")] == [1, 2]
    threads = torch.get_num_threads()
    result = pretrain(PretrainOptions(out=str(out), resume=True))  # steps 3-6: both boundaries after the cut
    torch.set_num_threads(threads)
    assert result.resumed_from == 2
    assert _losses(out) == _losses(reference / "staged")
    got = load_file(out / "final" / "model.safetensors")
    want = load_file(reference / "staged" / "final" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
