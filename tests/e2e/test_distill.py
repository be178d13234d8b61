"""Distillation (plmlab.finetune.distill): the triple loss by hand, the student's layer
initialisation, a few steps that lower the soft-target loss, resume, and the one-line refusals."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab import PlmlabError
from plmlab.cli import main
from plmlab.finetune.distill import (
    DistillWeights, distill, distill_loss, distill_options, every_other_layer, init_from_teacher, make_student,
)
from plmlab.presets import get_preset
from plmlab.tokenizers import train_tokenizer
from plmlab.train.parallel import Dist

WORDS = "the cat dog sat ran on in a park mat today bird flew over house tree big small red blue".split()
RUN = dict(batch_size=8, seq_len=32, progress="none", threads=1)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A small corpus and two fixed, random teachers with their tokenizers: bert-tiny (MLM) and a
    3-layer gpt-tiny (CLM). init_std 0.2 makes their distributions far from uniform."""
    root = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, size=12)) + "." for _ in range(400)]
    (root / "corpus.txt").write_text("\n\n".join(" ".join(lines[i:i + 5]) for i in range(0, len(lines), 5)))
    for name, style, preset, extra in (("bert", "bert", "bert-tiny", {}), ("gpt", "gpt2", "gpt-tiny", {"n_layers": 3})):
        tok = train_tokenizer(lines, style, vocab_size=120 if style == "bert" else 300, min_frequency=1)
        torch.manual_seed(0)
        model = plmlab.build_model(get_preset(preset).replace(vocab_size=tok.vocab_size, init_std=0.2, **extra))
        plmlab.save_pretrained(model, root / name, tokenizer=tok)
    return root


def test_triple_loss_equals_a_hand_computation():
    g = torch.Generator().manual_seed(0)
    s_logits, t_logits = torch.randn(2, 3, 5, generator=g), torch.randn(2, 3, 5, generator=g) * 2
    s_hidden, t_hidden = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    labels = torch.tensor([[-100, 2, -100], [4, -100, -100]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    lm = torch.tensor(1.7)
    T, w = 2.0, DistillWeights(temperature=2.0, alpha_ce=5.0, alpha_lm=2.0, alpha_cos=1.0)
    student = SimpleNamespace(logits=s_logits, last_hidden_state=s_hidden, loss=lm)
    teacher = SimpleNamespace(logits=t_logits, last_hidden_state=t_hidden, loss=None)

    def kl(b, i):  # sum_v p_t (log p_t - log p_s) at temperature T
        zs, zt = [float(x) / T for x in s_logits[b, i]], [float(x) / T for x in t_logits[b, i]]
        ls, lt = math.log(sum(map(math.exp, zs))), math.log(sum(map(math.exp, zt)))
        return sum(math.exp(t - lt) * ((t - lt) - (s - ls)) for s, t in zip(zs, zt))

    def one_minus_cos(b, i):
        a, c = s_hidden[b, i].tolist(), t_hidden[b, i].tolist()
        dot = sum(x * y for x, y in zip(a, c))
        return 1 - dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in c))

    real = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    for masked_lm, soft_at in ((True, [(0, 1), (1, 0)]), (False, real)):
        soft = T * T * sum(kl(b, i) for b, i in soft_at) / len(soft_at)
        cos = sum(one_minus_cos(b, i) for b, i in real) / len(real)
        parts = distill_loss(student, teacher, labels, mask, w, masked_lm)
        assert parts["soft_ce"].item() == pytest.approx(soft, rel=1e-5)
        assert parts["cos"].item() == pytest.approx(cos, rel=1e-5)
        assert parts["lm"].item() == pytest.approx(1.7)
        assert parts["loss"].item() == pytest.approx(5 * soft + 2 * 1.7 + cos, rel=1e-5)


def test_every_other_layer_keeps_the_first_and_the_last():
    assert every_other_layer(6, 12) == [0, 2, 4, 7, 9, 11]  # transformers' extract_distilbert.py
    assert every_other_layer(2, 4) == [0, 3] and every_other_layer(1, 2) == [0] and every_other_layer(3, 3) == [0, 1, 2]
    with pytest.raises(PlmlabError, match="more than the teacher's"):
        every_other_layer(7, 6)


def test_student_is_initialised_from_every_other_teacher_layer_exactly():
    torch.manual_seed(0)
    teacher = plmlab.build_model("bert-mini")  # 4 layers, token types, pooler, NSP head
    student = make_student("distilbert-mini", teacher, "teacher", seed=0)  # 2 layers <- 0 and 3
    ours, theirs = student.state_dict(), teacher.state_dict()
    for name, value in ours.items():
        source = name.replace("encoder.layers.1.", "encoder.layers.3.")
        assert torch.equal(value, theirs[source]), name
    assert any(k.startswith("encoder.layers.1.") for k in ours)
    assert not any(k.startswith(("embed.token_types", "pooler", "pair_head")) for k in ours)  # removed, as in the paper
    assert student.head.proj.weight is student.embed.tokens.weight  # still tied
    with pytest.raises(PlmlabError, match="cannot be initialised from the teacher.*--init random"):
        init_from_teacher(plmlab.build_model(get_preset("bert-tiny").replace(vocab_size=8192, n_layers=1)), teacher)


def distill_run(root, out, teacher="bert", student="distilbert-tiny", **kw):
    fields = {**RUN, **kw}
    return distill_options(str(root / teacher), student, str(out), corpus=[str(root / "corpus.txt")], **fields)


def test_a_few_steps_lower_the_soft_target_loss(root, tmp_path):
    from plmlab.finetune.distill import _prepare

    threads = torch.get_num_threads()
    o = distill_run(root, tmp_path / "run", max_steps=15, lr=3e-3, alpha_lm=0.0, alpha_cos=0.0, init="random")
    before = _prepare(o, Dist())
    with torch.no_grad():  # the untrained student, as the Trainer's evaluation scores it
        start = before.task.evaluate(before.model.eval(), contextlib.nullcontext, torch.device("cpu"))
    history = distill(o, log=lambda line: None)
    torch.set_num_threads(threads)
    assert history[-1]["eval_soft_ce"] < 0.8 * start["eval_soft_ce"], (start, history)
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 16)) and {"soft_ce", "student_lm", "hidden_cos"} <= set(records[0])
    final = plmlab.load_pretrained(tmp_path / "run" / "final")  # DistilBertForMaskedLM, the teacher's tokenizer
    assert json.loads((tmp_path / "run" / "final" / "config.json").read_text())["model_type"] == "distilbert"
    assert final.config.n_layers == 1 and (tmp_path / "run" / "final" / "tokenizer.json").is_file()


def test_decoder_distillation_resumes_bit_identically(root, tmp_path):
    """gpt-tiny (3 layers) -> gpt-tiny preset (2 layers <- 0, 2): soft-target KL + the student's
    CLM; a SIGINT at step 3 saves a checkpoint, --resume finishes the run with the weights of an
    uninterrupted one."""
    def cli(out, *extra, fault=None):
        args = [sys.executable, "-m", "plmlab", "distill", "--teacher", str(root / "gpt"), "--student", "gpt-tiny",
                "--corpus", str(root / "corpus.txt"), "--out", str(out), "--max-steps", "5", "--batch-size", "4",
                "--seq-len", "32", "--progress", "none", "--threads", "1", "--save-every", "1", *extra]
        env = {**os.environ, "PLMLAB_TEST_FAULT": fault or ""}
        return subprocess.run(args, capture_output=True, text=True, env=env)

    ref = cli(tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr
    cut = cli(tmp_path / "cut", fault="sigint@3")
    assert cut.returncode == 130, cut.stderr
    done = cli(tmp_path / "cut", "--resume")
    assert done.returncode == 0, done.stderr
    a, b = (load_file(tmp_path / d / "final" / "model.safetensors") for d in ("ref", "cut"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    config = json.loads((tmp_path / "ref" / "final" / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["n_layer"] == 2
    record = json.loads((tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["step"] == 5 and record["hidden_cos"] > 0 and math.isfinite(record["soft_ce"])


@pytest.mark.parametrize("case,match", [
    ("vocab", "vocabularies must be the same"),
    ("deeper", "more than the teacher's"),
    ("decoder-student", "this teacher distils into an encoder with an MLM head and 1-D positions, not a decoder"),
    ("no-teacher", "no such checkpoint directory"),
    ("narrower-cos", "--alpha-cos compares hidden states"),
    ("wider", "--student distilbert-mini is 256 wide (4 heads, d_ff 1024) and the teacher 64 (4 heads, d_ff 256)"),
])
def test_bad_input_is_one_line_and_exit_2(root, tmp_path, capsys, case, match):
    student = {"deeper": "bert-mini", "decoder-student": "gpt-tiny", "narrower-cos": "bert-mini",
               "wider": "distilbert-mini"}.get(case, "distilbert-tiny")
    teacher = str(tmp_path / "missing") if case == "no-teacher" else str(root / "bert")
    extra = ["--init", "random", "--alpha-cos", "1"] if case == "narrower-cos" else []
    if case == "vocab":
        plmlab.save_pretrained(plmlab.build_model("distilbert-tiny"), tmp_path / "student")  # 2048 ids, not 120
        student = str(tmp_path / "student")
    code = main(["distill", "--teacher", teacher, "--student", student, "--out", str(tmp_path / "out"),
                 "--corpus", str(root / "corpus.txt"), "--max-steps", "1", *extra])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("plmlab: error: ") and match in err, err
    assert not (tmp_path / "out" / "metrics.jsonl").exists()
    if case == "wider":  # what to pass instead: the default, a preset of the teacher's shape, or a random student
        assert "pass --student half (the default: the teacher with half its layers), --student distilbert-tiny " \
               "or --init random" in err, err


def test_the_default_student_is_half_the_teacher(root, tmp_path, capsys):
    """Without --student: the teacher's config with half its layers (DistilBERT's recipe: same width,
    one layer out of two), initialised from the teacher, trained, saved in the teacher's layout."""
    from plmlab.finetune.distill import make_student

    teacher = plmlab.load_pretrained(root / "gpt")  # 3 layers
    student = make_student("half", teacher, "teacher", 0)
    assert student.config == teacher.config.replace(n_layers=1)
    assert torch.equal(student.state_dict()["decoder.layers.0.attn.qkv.weight"],
                       teacher.state_dict()["decoder.layers.0.attn.qkv.weight"])
    code = main(["distill", "--teacher", str(root / "bert"), "--out", str(tmp_path / "out"),
                 "--corpus", str(root / "corpus.txt"), "--max-steps", "2", "--seq-len", "32", "--progress", "none"])
    assert code == 0, capsys.readouterr().err
    final = plmlab.load_pretrained(tmp_path / "out")
    assert final.config == plmlab.load_pretrained(root / "bert").config.replace(n_layers=1)
