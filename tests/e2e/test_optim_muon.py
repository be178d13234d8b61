"""`plmlab pretrain --optimizer muon`: which parameters Muon gets, one optimizer object for the
Trainer (state_dict round trip), determinism, exact resume after SIGKILL, the state in the
checkpoint, and the combinations that are refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.errors import PlmlabError
from plmlab.hf.manifest import list_checkpoints
from plmlab.train import PretrainOptions, pretrain, read_metrics
from plmlab.train.muon import Muon, MuonAdamW, newton_schulz, newton_schulz_gram, split_params
from plmlab.train.options import DEFAULTS
from test_train_resume import wait_for_records, write_corpus

ARGS = dict(preset="gpt-tiny", batch_size=4, seq_len=32, max_steps=12, save_every=3, eval_every=6, eval_batches=2,
            lr=3e-3, warmup=2, seed=7, threads=1, progress="none", sample_tokens=0, optimizer="muon",
            muon_lr=0.03, schedule="wsd", decay_fraction=0.5, decay_shape="1-sqrt")


def names(model, params) -> set[str]:
    ids = {id(p) for p in params}
    return {n for n, p in model.named_parameters() if id(p) in ids}


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny", "t5-tiny", "bert-tiny"])
def test_muon_gets_the_blocks_matrices_and_adamw_the_rest(preset):
    model = plmlab.build_model(preset)
    muon, rest = split_params(model)
    on_muon, on_adamw = names(model, muon), names(model, rest)
    assert on_muon and not on_muon & on_adamw
    assert on_muon | on_adamw == {n for n, p in model.named_parameters() if p.requires_grad}
    for name in on_muon:  # attention (self and cross) and MLP projections, nothing else
        assert ".layers." in name and name.endswith(".weight") and (".attn." in name or ".mlp." in name
                                                                     or ".cross." in name), name
    assert all(p.dim() == 2 for p in muon)
    for name in on_adamw:  # embeddings, the head, norms, biases, pooler
        assert "embed" in name or "head" in name or "norm" in name or name.endswith(".bias") or "pooler" in name \
            or "relative" in name, name
    block_linears = {f"{n}.weight" for n, m in model.named_modules()
                     if isinstance(m, torch.nn.Linear) and ".layers." in n}
    assert on_muon == block_linears


def test_untied_head_and_position_table_stay_on_adamw():
    llama = plmlab.build_model("llama-tiny")
    assert "head.proj.weight" in names(llama, split_params(llama)[1])
    gpt = plmlab.build_model("gpt-tiny")
    assert {"embed.tokens.weight", "embed.positions.weight"} <= names(gpt, split_params(gpt)[1])


def _step(opt: MuonAdamW, model, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, model.config.vocab_size, (2, 8), generator=g)  # (B, T)
    model(input_ids=ids).logits.float().logsumexp(-1).mean().backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def test_state_dict_round_trip_continues_identically():
    torch.manual_seed(0)
    a = plmlab.build_model("gpt-tiny")
    b = plmlab.build_model("gpt-tiny")
    b.load_state_dict(a.state_dict())
    opt_a, opt_b = MuonAdamW(a, 1e-3, 0.02, 0.1), MuonAdamW(b, 1e-3, 0.02, 0.1)
    _step(opt_a, a, 1)
    _step(opt_b, b, 1)
    state = opt_a.state_dict()
    assert set(state) == {"muon", "adamw"}
    assert all("momentum_buffer" in s for s in state["muon"]["state"].values())
    assert all("exp_avg_sq" in s for s in state["adamw"]["state"].values())
    fresh = MuonAdamW(b, 1e-3, 0.02, 0.1)
    fresh.load_state_dict(opt_b.state_dict())
    _step(opt_a, a, 2)
    _step(fresh, b, 2)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(ValueError, match="not a Muon"):
        fresh.load_state_dict(torch.optim.AdamW(b.parameters()).state_dict())


def test_lr_scale_puts_muon_at_muon_lr():
    from plmlab.train.optim import set_lr

    opt = MuonAdamW(plmlab.build_model("gpt-tiny"), 2e-3, 0.02, 0.1)
    set_lr(opt, 1e-3)  # the schedule at half its peak
    muon_lrs = [g["lr"] for g in opt.muon.param_groups]
    assert muon_lrs == pytest.approx([0.01]) and {g["lr"] for g in opt.adamw.param_groups} == {1e-3}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("muon") / "corpus.jsonl")


@pytest.fixture(scope="module")
def reference(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("muon-ref") / "run"
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(out), corpus=[str(corpus)], **ARGS))
    torch.set_num_threads(threads)
    return out


def test_two_muon_runs_are_identical_and_differ_from_adamw(tmp_path, corpus, reference):
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(tmp_path / "again"), corpus=[str(corpus)], **ARGS))
    adamw = {**ARGS, "optimizer": "adamw"}
    del adamw["muon_lr"]
    pretrain(PretrainOptions(out=str(tmp_path / "adamw"), corpus=[str(corpus)], **adamw))
    torch.set_num_threads(threads)
    losses = {k: [r["loss"] for r in read_metrics(p / "metrics.jsonl")]
              for k, p in (("ref", reference), ("again", tmp_path / "again"), ("adamw", tmp_path / "adamw"))}
    assert losses["ref"] == losses["again"]
    assert losses["ref"][0] == losses["adamw"][0] and losses["ref"][1:] != losses["adamw"][1:]


def test_the_checkpoint_holds_muons_state_and_the_options(reference):
    folder = list_checkpoints(reference / "checkpoints")[-1][1]
    info = json.loads((folder / "trainer/state.json").read_text())
    assert info["options"]["optimizer"] == "muon" and info["options"]["schedule"] == "wsd"
    tensors = load_file(folder / "trainer/tensors.safetensors")
    buffers = [k for k in tensors if k.startswith("optimizer.muon.state.") and k.endswith("momentum_buffer")]
    n_muon = len(split_params(plmlab.build_model("gpt-tiny"))[0])
    assert len(buffers) == n_muon and all(tensors[k].abs().sum() > 0 for k in buffers)
    assert any(k.startswith("optimizer.adamw.state.") and k.endswith("exp_avg") for k in tensors)


def test_sigkill_mid_run_then_resume_is_bit_identical(tmp_path, corpus, reference):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "plmlab", "pretrain", "--out", str(out), "--corpus", str(corpus)]
    for key, value in ARGS.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    src = str(Path(plmlab.__file__).resolve().parents[1])
    env = {**os.environ, "PLMLAB_TEST_FAULT": "slow@0.3",
           "PYTHONPATH": src + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_records(proc, out / "metrics.jsonl", 5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(out / "checkpoints")[-1][0] in (3, 6, 9)
    threads = torch.get_num_threads()
    result = pretrain(PretrainOptions(out=str(out), resume=True))  # the run's own optimizer and schedule
    torch.set_num_threads(threads)
    assert result.step == 12
    ours, theirs = read_metrics(out / "metrics.jsonl"), read_metrics(reference / "metrics.jsonl")
    assert [r["loss"] for r in ours] == [r["loss"] for r in theirs]
    assert [r["lr"] for r in ours] == [r["lr"] for r in theirs]
    a, b = load_file(out / "final/model.safetensors"), load_file(reference / "final/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(PlmlabError, match="--optimizer adamw"):
        pretrain(PretrainOptions(out=str(out), resume=True, optimizer="adamw", max_steps=13))


@pytest.mark.parametrize("given, message", [
    ({"optimizer": "muon", "strategy": "fsdp"}, "needs whole weight matrices"),
    ({"optimizer": "adamw", "muon_lr": 0.05}, "--muon-lr is for --optimizer muon"),
    ({"schedule": "cosine", "decay_fraction": 0.3}, "--decay-fraction is for --schedule wsd"),
    ({"schedule": "linear", "decay_shape": "1-sqrt"}, "--decay-shape is for --schedule wsd"),
    ({"schedule": "wsd", "decay_fraction": 0.0}, r"--decay-fraction must be in \(0, 1\]"),
    ({"schedule": "wsd", "decay_fraction": 1.5}, r"--decay-fraction must be in \(0, 1\]"),
    ({"optimizer": "muon", "muon_lr": -1.0}, "--muon-lr must be"),
    ({"optimizer": "sgd"}, "--optimizer must be one of adamw, muon"),
    ({"schedule": "step"}, "--schedule must be one of cosine, wsd, linear, constant"),
])
def test_invalid_combinations_are_one_line(given, message):
    with pytest.raises(PlmlabError, match=message) as info:
        PretrainOptions(out="x", preset="gpt-tiny", **given).resolved()
    assert "\n" not in str(info.value)


def test_a_run_saved_before_the_optimizer_option_resumes_as_adamw_cosine():
    stored = {k: v for k, v in DEFAULTS.items()
              if k not in ("optimizer", "muon_lr", "schedule", "decay_fraction", "decay_shape")}
    o = PretrainOptions(out="x", resume=True).resolved({**stored, "preset": "gpt-tiny", "min_lr": 2e-4,
                                                        "warmup": 60})
    assert (o.optimizer, o.schedule) == ("adamw", "cosine")


def test_cli_refuses_an_unknown_optimizer(tmp_path):
    src = str(Path(plmlab.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-m", "plmlab", "pretrain", "--preset", "gpt-tiny", "--out",
                           str(tmp_path / "x"), "--optimizer", "muon", "--strategy", "fsdp"],
                          env={**os.environ, "PYTHONPATH": src}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "plmlab: error: --optimizer muon needs whole weight matrices, which --strategy fsdp shards; "
        "use --strategy ddp or --optimizer adamw"]


def test_ddp_two_ranks_with_muon_follow_one_process(tmp_path, monkeypatch):
    """Muon under DDP: every rank orthogonalises the same all-reduced gradients. In fp32 the
    all-reduce's summation-order differences (~1e-7 relative) stay that small through Newton-
    Schulz, so the run is held to AdamW's DDP tolerances (test_train_scale.assert_close_runs:
    losses and validation losses to 1e-5 relative, weights to 1e-5 + 5e-5). The dtype is pinned:
    in bf16, the default on CPUs with native bf16, rounding the iteration to 8 bits turns those
    differences into ~1e-2 weight differences in a few steps (measured: 5.6e-3 after 6 steps)."""
    from test_train_scale import COMMON, assert_close_runs, torchrun

    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    muon = {**COMMON, "optimizer": "muon", "muon_dtype": "fp32"}
    threads = torch.get_num_threads()
    pretrain(PretrainOptions(out=str(tmp_path / "one"), corpus=[str(corpus)], batch_size=4, **muon))
    torch.set_num_threads(threads)
    done = torchrun(tmp_path / "two", corpus, 2, batch_size=2, optimizer="muon", muon_dtype="fp32")
    assert done.returncode == 0, done.stderr[-3000:]
    assert_close_runs(tmp_path / "one", tmp_path / "two", steps=range(1, 7))
    info = json.loads((tmp_path / "two/checkpoints/step-00000006/trainer/state.json").read_text())
    assert info["options"]["optimizer"] == "muon" and set(info["optimizer"]) == {"muon", "adamw"}
    assert info["options"]["muon_dtype"] == "fp32"


# ------------------------------------------------------------ Newton-Schulz's dtype
def _twin_models():
    torch.manual_seed(0)
    a, b = plmlab.build_model("gpt-tiny"), plmlab.build_model("gpt-tiny")
    b.load_state_dict(a.state_dict())
    return a, b


def _hidden(model):
    return [p for n, p in model.named_parameters() if p.dim() == 2 and ".layers." in n]


def test_bf16_newton_schulz_is_torch_optim_muon_bit_for_bit():
    a, b = _twin_models()
    options = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, adjust_lr_fn="original")
    theirs = torch.optim.Muon(_hidden(a), **options)
    ours = Muon(_hidden(b), ns_dtype="bf16", **options)
    for seed in range(3):
        _step(theirs, a, seed)
        _step(ours, b, seed)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert theirs.state_dict()["state"].keys() == ours.state_dict()["state"].keys()


def test_fp32_newton_schulz_orthogonalises_like_bf16_but_closer():
    """Both dtypes give US'V^T with S' near 1 (Keller's coefficients leave S' in about [0.7, 1.2]);
    fp32 is the reference the bf16 iteration approximates."""
    g = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    polar = u @ vh  # the exact nearest semi-orthogonal matrix
    steps, coefficients, eps = 5, (3.4445, -4.7750, 2.0315), 1e-7
    fp32 = newton_schulz(g, steps, coefficients, eps, torch.float32)
    bf16 = newton_schulz(g, steps, coefficients, eps, torch.bfloat16).float()
    assert fp32.dtype == torch.float32 and fp32.shape == g.shape
    singular = torch.linalg.svdvals(fp32)
    assert 0.6 < singular.min() and singular.max() < 1.3
    cos = torch.nn.functional.cosine_similarity(fp32.flatten(), polar.flatten(), dim=0)
    assert cos > 0.95
    assert (bf16 - fp32).abs().max() < 0.05  # bf16 keeps 8 bits: the same matrix, coarser
    assert (bf16 - fp32).abs().max() > 1e-4  # ... but not the same floats (the test can tell them apart)


@pytest.mark.parametrize("shape", [(96, 64), (64, 96), (48, 48), (192, 48)])
def test_the_gram_iteration_is_the_same_polynomial(shape):
    """fp32 Muon iterates on the Gram matrix (fewer flops): in fp64 it is the iteration on X to
    rounding, in fp32 as close to that as the iteration on X itself is."""
    g = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    steps, coefficients, eps = 5, (3.4445, -4.7750, 2.0315), 1e-7
    exact = newton_schulz(g.double(), steps, coefficients, eps, torch.float64)
    assert torch.allclose(newton_schulz_gram(g, steps, coefficients, eps, torch.float64), exact, atol=1e-10)
    gram = newton_schulz_gram(g, steps, coefficients, eps)
    on_x = newton_schulz(g, steps, coefficients, eps, torch.float32)
    assert gram.dtype == torch.float32 and gram.shape == g.shape
    assert (gram.double() - exact).norm() / exact.norm() < 1e-4
    assert (on_x.double() - exact).norm() / exact.norm() < 1e-4
    b = g.clone()
    b[0, 0] += 0.05  # a different gradient gives a different update: the check can fail
    assert not torch.allclose(newton_schulz_gram(b, steps, coefficients, eps), gram, atol=1e-4)


def test_auto_takes_bf16_only_where_bf16_matmul_is_native(monkeypatch):
    import plmlab.train.muon as muon

    cpu = torch.device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert muon.newton_schulz_dtype("auto", cpu) == "fp32"
    assert muon.newton_schulz_dtype("bf16", cpu) == "bf16"  # asked for: obeyed
    assert muon.newton_schulz_dtype("auto", torch.device("cuda")) == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert muon.newton_schulz_dtype("auto", cpu) == "bf16"
    opt = MuonAdamW(plmlab.build_model("gpt-tiny"), 2e-3, 0.02, 0.1)
    assert opt.ns_dtype == "bf16" and opt.muon.ns_dtype == "bf16"
    assert "Newton-Schulz in bf16" in opt.describe() and "has native bf16" in opt.describe()


def test_the_run_records_and_logs_its_newton_schulz_dtype(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PLMLAB_CACHE", str(tmp_path / "cache"))
    corpus = write_corpus(tmp_path / "corpus.jsonl")
    args = {**ARGS, "max_steps": 2, "save_every": 0, "eval_every": 0, "progress": "plain"}
    threads = torch.get_num_threads()
    result = pretrain(PretrainOptions(out=str(tmp_path / "r"), corpus=[str(corpus)], muon_dtype="fp32", **args))
    torch.set_num_threads(threads)
    assert result.muon_dtype == "fp32"
    assert json.loads((tmp_path / "r/summary.json").read_text())["muon_dtype"] == "fp32"
    assert "plmlab: Muon: Newton-Schulz in fp32" in capsys.readouterr().err
    # a run moved to another machine may change it on resume, like --device
    assert PretrainOptions(out="x", resume=True, muon_dtype="bf16").resolved(
        {**DEFAULTS, "preset": "gpt-tiny", "min_lr": 2e-4, "warmup": 60}).muon_dtype == "bf16"
    with pytest.raises(PlmlabError, match="--muon-dtype is for --optimizer muon"):
        PretrainOptions(out="x", preset="gpt-tiny", optimizer="adamw", muon_dtype="fp32").resolved()


def test_a_run_saved_before_the_dtype_option_resumes_in_bf16():
    """torch.optim.Muon iterated in bf16: an older Muon run resumes as it was trained."""
    stored = {k: v for k, v in DEFAULTS.items() if k != "muon_dtype"}
    o = PretrainOptions(out="x", resume=True).resolved({**stored, "preset": "gpt-tiny", "min_lr": 2e-4, "warmup": 60})
    assert (o.optimizer, o.muon_dtype) == ("muon", "bf16")
