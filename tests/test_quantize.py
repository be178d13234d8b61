"""int8 linear layers: logits within a stated tolerance of fp32, what is refused, the CLI flag."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import plmlab
from plmlab.errors import PlmlabError
from plmlab.nn.quantize import Int8Linear, quantize

# Per-channel int8 weights and on-the-fly int8 activations (7-bit range on x86) leave a relative
# error of a few percent on the logits of these random tiny models (measured 2-3 %); 6 % bounds it.
REL_TOL = 0.06


def _model(preset: str):
    torch.manual_seed(0)
    return plmlab.build_model(preset).eval()


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny", "t5-tiny"])
def test_int8_logits_close_to_fp32(preset):
    fp32 = _model(preset)
    q = quantize(copy.deepcopy(fp32), "int8")
    assert q.quantized == "int8"
    assert not any(type(m) is nn.Linear for m in q.modules())
    ids = torch.randint(0, fp32.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    kw = {"decoder_input_ids": ids[:, :5]} if fp32.config.arch == "encoder-decoder" else {}
    with torch.no_grad():
        a, b = fp32(ids, **kw).logits, q(ids, **kw).logits
    rel = ((a - b).norm() / a.norm()).item()
    assert 0 < rel < REL_TOL


def test_int8_linear_matches_its_dequantized_weight():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    q = Int8Linear(lin).eval()
    w = q.dequantized_weight()
    assert (w - lin.weight).abs().max() <= q.scale.max() / 2 + 1e-6  # rounding: half a step at most
    x = torch.randn(3, 5, 64)
    torch.testing.assert_close(q(x), x @ w.T + lin.bias, rtol=0.05, atol=0.05)
    assert q.weight_bytes() < lin.weight.numel() * 4 / 3


def test_tied_embedding_untouched():
    model = _model("gpt-tiny")
    emb = model.embed.tokens.weight.clone()
    quantize(model, "int8")
    assert torch.equal(model.embed.tokens.weight, emb)
    assert isinstance(model.head.proj, Int8Linear)


def test_int8_generates():
    q = quantize(_model("llama-tiny"), "int8")
    out = plmlab.generate(q, [[1, 5, 9], [7]], max_new_tokens=6, eos_token_id=None)
    assert out.shape == (2, 6)


def test_refusals():
    with pytest.raises(PlmlabError, match="unknown quantization"):
        quantize(_model("gpt-tiny"), "int4")
    with pytest.raises(PlmlabError, match="no linear layers"):
        quantize(nn.Sequential(nn.Embedding(4, 4)), "int8")
    q = quantize(_model("gpt-tiny"), "int8")
    q.train()
    with pytest.raises(PlmlabError, match="inference only"):
        q(torch.tensor([[1, 2, 3]]))
    with pytest.raises(PlmlabError, match="cannot be combined"):
        plmlab.generation.prepare_for_decoding(_model("gpt-tiny"), "int8", compile=True)


def test_pipeline_quantize(tmp_path):
    from plmlab.tokenizers import train_tokenizer

    tok = train_tokenizer(["the quick brown fox jumps over the lazy dog"] * 20, "gpt2", vocab_size=280)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32).eval()
    gen = plmlab.pipeline("text-generation", model, tokenizer=tok, quantize="int8", max_new_tokens=4)
    assert isinstance(gen.model.head.proj, Int8Linear)
    assert isinstance(gen("the quick")["text"], str)
    with pytest.raises(PlmlabError, match="unknown quantization"):
        plmlab.pipeline("text-generation", model, tokenizer=tok, quantize="fp4")


def _cli(monkeypatch, argv):
    from test_generation import run_cli
    from plmlab.cli import generate as gen_cli
    from plmlab.tokenizers import train_tokenizer

    tok = train_tokenizer(["hello world, the quick brown fox"] * 20, "gpt2", vocab_size=280)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32).eval()
    monkeypatch.setattr(gen_cli, "load", lambda *a: (model, tok))
    return run_cli(["generate", "--model", "M", "--max-new-tokens", "3", "--json", *argv], "hello\n"), model


def test_cli_quantize(monkeypatch):
    (code, out, err), model = _cli(monkeypatch, ["--quantize", "int8"])
    assert code == 0, err
    assert isinstance(model.head.proj, Int8Linear)


def test_cli_refused_combination(monkeypatch):
    (code, out, err), _ = _cli(monkeypatch, ["--quantize", "int8", "--compile"])
    assert code == 2 and out == ""
    assert err.strip().startswith("plmlab: error:") and "cannot be combined" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", ["generate", "chat"])
def test_cli_unknown_scheme_is_one_line(verb):
    from test_generation import run_cli

    code, out, err = run_cli([verb, "--model", "M", "--quantize", "int4"])
    assert code == 2 and out == ""
    assert "invalid choice: 'int4'" in err and len(err.strip().splitlines()) == 1


def test_a_quantized_model_is_never_saved(tmp_path):
    q = quantize(_model("gpt-tiny"), "int8")
    with pytest.raises(PlmlabError, match="int8-quantized model cannot be saved"):
        plmlab.save_pretrained(q, tmp_path / "q")
    assert not (tmp_path / "q").exists()  # refused before anything is written


def test_served_model_loads_quantized(tmp_path):
    from plmlab.serve.served import ServedModel
    from plmlab.tokenizers import builtin_tokenizer

    tok = builtin_tokenizer("gpt2", 300)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32).eval()
    plmlab.save_pretrained(model, tmp_path / "m", tokenizer=tok)
    served = ServedModel.load(tmp_path / "m", quantize="int8")
    assert served.model.quantized == "int8" and isinstance(served.model.head.proj, Int8Linear)
    assert "completions" in served.tasks
    with pytest.raises(PlmlabError):
        ServedModel.load(tmp_path / "m", quantize="int4")
