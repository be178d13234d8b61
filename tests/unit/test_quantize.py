"""int8 linear layers: the weight-only product is the hand computation, logits within a stated
tolerance of fp32, what is refused, the --quantize flag of generate / chat / serve / evaluate.
(Real weights: tests/parity/test_quantize_real.py.)"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch
from torch import nn

import plmlab
from plmlab.errors import PlmlabError
from plmlab.nn import quantize as quantize_module
from plmlab.nn.quantize import KERNELS, SCHEMES, DynamicInt8Linear, Int8Linear, quantize

# Relative error of the logits of these random tiny models, bounded at about twice the measured:
# weight-only int8 rounds each weight by half a step at most (measured 0.8-1.1 %), int8-dynamic
# also rounds the activations to a 7-bit range per call (measured 2.3-2.6 %).
REL_TOL = {"int8": 0.02, "int8-dynamic": 0.05}
# The weight-only kernels compute the same fp32 product, except int8pack_mm_bf16, which rounds the
# activations and the output to bf16 (8 significant bits: 2^-8 relative).
KERNEL_TOL = {k: {"rtol": 1e-2, "atol": 1e-2} if k.endswith("bf16") else {} for k in KERNELS}


def _model(preset: str):
    torch.manual_seed(0)
    return plmlab.build_model(preset).eval()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny", "t5-tiny"])
def test_int8_logits_close_to_fp32(preset, scheme):
    fp32 = _model(preset)
    q = quantize(copy.deepcopy(fp32), scheme)
    assert q.quantized == scheme
    embeddings = [m.weight for m in q.modules() if isinstance(m, nn.Embedding)]
    left = [m for m in q.modules() if type(m) is nn.Linear]  # int8: a head tied to an embedding only
    assert all(any(m.weight is e for e in embeddings) for m in left) and (scheme == "int8" or not left)
    ids = torch.randint(0, fp32.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    kw = {"decoder_input_ids": ids[:, :5]} if fp32.config.arch == "encoder-decoder" else {}
    with torch.no_grad():
        a, b = fp32(ids, **kw).logits, q(ids, **kw).logits
    rel = ((a - b).norm() / a.norm()).item()
    assert 0 < rel < REL_TOL[scheme]


def test_weight_only_int8_by_hand():
    """Per-output-channel scale = max |w| / 127, weights rounded to it, activations untouched."""
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.27, 0.013], [2.54, 0.0, -1.0]]))
        lin.bias.copy_(torch.tensor([0.1, -0.2]))
    q = Int8Linear(lin).eval()
    # row 0: scale 1.27 / 127 = 0.01, weights 50, -127, 1 (0.013 / 0.01 = 1.3 rounds to 1)
    # row 1: scale 2.54 / 127 = 0.02, weights 127, 0, -50
    assert q.weight_int8.tolist() == [[50, -127, 1], [127, 0, -50]]
    torch.testing.assert_close(q.scale, torch.tensor([0.01, 0.02]))
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # y0 = (50 - 254 + 3) * 0.01 + 0.1 = -1.91;  y1 = (127 + 0 - 150) * 0.02 - 0.2 = -0.66
    for kernel in KERNELS:
        q.kernel = kernel
        for _ in range(20):  # a kernel that reads uninitialised memory fails only now and then
            torch.testing.assert_close(q(x), torch.tensor([[-1.91, -0.66]]), **KERNEL_TOL[kernel])


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("block_bytes", [4 << 20, 64 * 4 * 10])  # one block; five blocks of 10 rows
def test_weight_only_kernels_equal_the_dequantized_product(kernel, block_bytes, monkeypatch):
    monkeypatch.setattr(quantize_module, "BLOCK_BYTES", block_bytes)
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    with torch.no_grad():
        lin.weight[5] = 0  # an all-zero row stays zero
    q = Int8Linear(lin).eval()
    q.kernel = kernel
    w = q.dequantized_weight()
    assert (w - lin.weight).abs().amax(dim=1).le(q.scale / 2 + 1e-7).all()  # half a step at most, per row
    assert torch.equal(w[5], torch.zeros(64))
    for shape in [(1, 64), (3, 5, 64)]:  # a decoding step; a batch of sequences
        x = torch.randn(*shape)
        torch.testing.assert_close(q(x), x @ w.T + lin.bias, **KERNEL_TOL[kernel])  # fp32: x is not rounded
    assert q.weight_bytes() < lin.weight.numel() * 4 / 3


def test_int8_dynamic_matches_its_dequantized_weight():
    torch.manual_seed(0)
    lin = nn.Linear(64, 48)
    q = DynamicInt8Linear(lin).eval()
    w = q.dequantized_weight()
    assert (w - lin.weight).abs().max() <= q.scale.max() / 2 + 1e-6  # rounding: half a step at most
    x = torch.randn(3, 5, 64)
    # activations rounded too: close, not equal
    torch.testing.assert_close(q(x), x @ w.T + lin.bias, rtol=0.05, atol=0.05)
    assert not torch.allclose(q(x), x @ w.T + lin.bias, rtol=1e-5, atol=1e-5)


def _int8_types(model) -> set[type]:
    return {type(m) for m in model.modules() if isinstance(m, (Int8Linear, DynamicInt8Linear))}


@pytest.mark.parametrize("scheme,head", [("int8", nn.Linear), ("int8-dynamic", DynamicInt8Linear)])
def test_tied_embedding_untouched(scheme, head):
    """Weight-only int8 leaves a tied head as the fp32 embedding matrix (an int8 copy would add
    bytes); int8-dynamic gives it its own int8 copy. The embedding is untouched either way."""
    model = _model("gpt-tiny")
    emb = model.embed.tokens.weight.clone()
    quantize(model, scheme)
    assert torch.equal(model.embed.tokens.weight, emb)
    assert type(model.head.proj) is head
    if scheme == "int8":
        assert model.head.proj.weight is model.embed.tokens.weight
    untied = quantize(_model("llama-tiny"), "int8")  # its own head matrix: quantized
    assert isinstance(untied.head.proj, Int8Linear)


def test_int8_generates():
    q = quantize(_model("llama-tiny"), "int8")
    out = plmlab.generate(q, [[1, 5, 9], [7]], max_new_tokens=6, eos_token_id=None)
    assert out.shape == (2, 6)


def test_refusals():
    with pytest.raises(PlmlabError, match="unknown quantization"):
        quantize(_model("gpt-tiny"), "int4")
    with pytest.raises(PlmlabError, match="already quantized"):
        quantize(quantize(_model("gpt-tiny"), "int8"), "int8-dynamic")
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
    assert _int8_types(gen.model) == {Int8Linear}
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


@pytest.mark.parametrize("scheme,layer", [("int8", Int8Linear), ("int8-dynamic", DynamicInt8Linear)])
def test_cli_quantize(monkeypatch, scheme, layer):
    (code, out, err), model = _cli(monkeypatch, ["--quantize", scheme])
    assert code == 0, err
    assert _int8_types(model) == {layer}


def test_cli_refused_combination(monkeypatch):
    (code, out, err), _ = _cli(monkeypatch, ["--quantize", "int8", "--compile"])
    assert code == 2 and out == ""
    assert err.strip().startswith("plmlab: error:") and "cannot be combined" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("verb", ["generate", "chat", "serve", "evaluate"])
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
    assert served.model.quantized == "int8" and _int8_types(served.model) == {Int8Linear}
    assert "completions" in served.tasks
    with pytest.raises(PlmlabError):
        ServedModel.load(tmp_path / "m", quantize="int4")


@pytest.fixture
def saved_gpt(tmp_path):
    from plmlab.tokenizers import builtin_tokenizer

    tok = builtin_tokenizer("gpt2", 300)
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32).eval()
    plmlab.save_pretrained(model, tmp_path / "m", tokenizer=tok)
    data = tmp_path / "text.txt"
    data.write_text("The quick brown fox jumps over the lazy dog.\nA second line of plain text to score.\n")
    return tmp_path / "m", data


def test_evaluate_quantize(saved_gpt):
    """`evaluate --quantize` scores the model as generate would run it: close to fp32, not equal."""
    from test_generation import run_cli

    from plmlab.evaluate import EvalOptions, run

    model_dir, data = saved_gpt
    o = EvalOptions(model=str(model_dir), task="perplexity", data=str(data))
    fp32 = run(o).metrics["perplexity"]
    for scheme in SCHEMES:
        ppl = run(replace(o, quantize=scheme)).metrics["perplexity"]
        assert ppl != fp32 and abs(ppl / fp32 - 1) < REL_TOL[scheme]
    code, out, err = run_cli(["evaluate", "--model", str(model_dir), "--task", "perplexity", "--data", str(data),
                              "--quantize", "int8", "--json"])
    assert code == 0, err
    assert json.loads(out)["perplexity"] == run(replace(o, quantize="int8")).metrics["perplexity"]
    with pytest.raises(PlmlabError, match="unknown quantization 'int4'"):
        run(replace(o, model="no/such/dir", quantize="int4"))  # checked before anything is loaded


def test_lm_eval_model_quantize(saved_gpt):
    pytest.importorskip("lm_eval", reason="lm-eval is an optional extra")
    from plmlab.lmeval import PlmlabLM

    lm = PlmlabLM(pretrained=str(saved_gpt[0]), quantize="int8")
    assert _int8_types(lm.model) == {Int8Linear}
