"""Decoding speed paths give the same tokens: the transposed weight layout, last-position logits,
the static KV cache (eager) and the compiled step (slow), greedy and seeded sampling."""

from __future__ import annotations

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.generation import compiled, layout


def _model(preset: str, **overrides):
    torch.manual_seed(0)
    return plmlab.build_model(preset, init_std=0.2, **overrides).eval()


def _prompts(vocab: int):
    g = torch.Generator().manual_seed(3)
    return [torch.randint(0, vocab, (n,), generator=g).tolist() for n in (5, 9, 2)]


@pytest.fixture
def eager_static(monkeypatch):
    """compile=True without torch.compile: the static-cache step run eagerly."""
    monkeypatch.setattr(compiled, "compiled_step", lambda: compiled._step)


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny"])
@pytest.mark.parametrize("kw", [{}, {"do_sample": True, "top_k": 20, "seed": 7}], ids=["greedy", "sample"])
def test_cached_uncached_static_same_tokens(preset, kw, eager_static):
    model = _model(preset)
    rows = _prompts(model.config.vocab_size)
    run = lambda **extra: plmlab.generate(model, rows, max_new_tokens=12, eos_token_id=None, **kw, **extra)
    cached = run()
    assert torch.equal(cached, run(use_cache=False))
    assert torch.equal(cached, run(compile=True))


def test_transposed_layout_leaves_the_model_as_it_was():
    model = _model("gpt-tiny")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rows = _prompts(model.config.vocab_size)
    with torch.no_grad(), layout.decode_layout(model):
        assert type(model.head.proj).forward is not model.head.proj.forward  # patched inside
        patched = model(torch.tensor([rows[1]])).logits
    plain = model(torch.tensor([rows[1]])).logits
    torch.testing.assert_close(patched, plain, rtol=1e-5, atol=1e-5)
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert model.head.proj.weight is model.embed.tokens.weight  # still tied
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_transposed_copy_follows_weight_updates():
    model = _model("gpt-tiny")
    rows = _prompts(model.config.vocab_size)
    plmlab.generate(model, rows, max_new_tokens=4, eos_token_id=None)  # builds the cached copies
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(-1.5)  # an optimizer-like in-place update
    assert torch.equal(plmlab.generate(model, rows, max_new_tokens=8, eos_token_id=None),
                       plmlab.generate(model, rows, max_new_tokens=8, eos_token_id=None, use_cache=False))
    layout.release(model)
    assert all("_decode_wt" not in m.__dict__ for m in model.modules())


def test_layout_off_with_grad():
    model = _model("gpt-tiny")
    with layout.decode_layout(model):  # grad enabled: a graph must reach the real weights
        assert all("forward" not in m.__dict__ for m in model.modules())


def test_last_only_logits():
    model = _model("llama-tiny")
    ids = torch.tensor(_prompts(model.config.vocab_size)[1])[None]
    with torch.no_grad():
        full, last = model(ids).logits, model(ids, last_only=True).logits
    assert last.shape == (1, 1, model.config.vocab_size)
    torch.testing.assert_close(last, full[:, -1:])


def test_compile_refusals():
    model = _model("gpt-tiny")
    with pytest.raises(PlmlabError, match="beam search"):
        plmlab.generate(model, [[1, 2]], max_new_tokens=2, num_beams=2, compile=True)
    with pytest.raises(PlmlabError, match="decoder-only"):
        plmlab.generate(_model("t5-tiny"), [[1, 2]], max_new_tokens=2, compile=True)
    with pytest.raises(PlmlabError, match="2-D"):
        plmlab.generate(_model("glm-tiny"), [[1, 2]], max_new_tokens=2, compile=True)


@pytest.mark.slow
def test_compiled_same_tokens_and_no_recompiles():
    """torch.compile of the single-token step: the tokens of the eager path, one graph for every
    step and for a second call of the same shape (dynamo's counters)."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = _model("gpt-tiny")
    rows = _prompts(model.config.vocab_size)[:1]
    eager = plmlab.generate(model, rows, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(plmlab.generate(model, rows, max_new_tokens=10, eos_token_id=None, compile=True), eager)
    assert counters["stats"]["unique_graphs"] == 1
    sampled = dict(do_sample=True, top_p=0.9, seed=3, max_new_tokens=10, eos_token_id=None)
    assert torch.equal(plmlab.generate(model, rows, compile=True, **sampled), plmlab.generate(model, rows, **sampled))
    assert counters["stats"]["unique_graphs"] == 1  # same shapes: no recompilation
    assert not counters["graph_break"]


@pytest.mark.parametrize("preset", ["gpt-tiny", "t5-tiny"])
def test_generated_ids_feed_a_training_step(preset):
    """The decode steps run in inference mode; what generate returns is an ordinary tensor, and a
    training step between two generate calls is seen by the second (cached copies rebuilt)."""
    model = _model(preset)
    rows = _prompts(model.config.vocab_size)
    ids = plmlab.generate(model, rows, max_new_tokens=6, eos_token_id=None)
    assert not ids.is_inference()
    model.train()
    kw = {"decoder_input_ids": ids} if preset == "t5-tiny" else {}
    src = torch.tensor([rows[0][:2]] * ids.shape[0]) if preset == "t5-tiny" else ids
    loss = model(src, labels=ids, **kw).loss
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=5.0).step()
    model.eval()
    assert torch.equal(plmlab.generate(model, rows, max_new_tokens=6, eos_token_id=None),
                       plmlab.generate(model, rows, max_new_tokens=6, eos_token_id=None, use_cache=False))


def _step_ops(model) -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile

    cache, token = model.new_cache(1, 8), torch.tensor([[4]])
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3]]), cache=cache, last_only=True)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(token, cache=cache, last_only=True)
    counts: dict[str, int] = {}
    for e in prof.events():
        if e.cpu_parent is None:
            counts[e.name] = counts.get(e.name, 0) + 1
    return counts


def test_fp32_decode_step_has_no_dropout_or_casts():
    """Per token: no eval-mode dropout calls, and an fp32 LLaMA's RMSNorm and rotary make no
    dtype casts (the one left turns the integer positions into angles)."""
    ops = _step_ops(_model("llama-tiny"))
    assert "aten::dropout" not in ops
    assert ops.get("aten::to", 0) == 1
    assert ops["aten::rms_norm"] == 2 * _model("llama-tiny").config.n_layers + 1
    with_dropout = _model("gpt-tiny", dropout=0.1)
    assert any(isinstance(m, torch.nn.Dropout) for m in with_dropout.modules())  # p > 0 keeps its module
    assert not any(isinstance(m, torch.nn.Dropout) for m in _model("gpt-tiny", dropout=0.0).modules())


def test_model_made_in_inference_mode_decodes():
    """Inference tensors keep no version counter: the transposed copies key on address and shape."""
    with torch.inference_mode():
        model = _model("gpt-tiny")
    rows = _prompts(model.config.vocab_size)
    assert torch.equal(plmlab.generate(model, rows, max_new_tokens=5, eos_token_id=None),
                       plmlab.generate(model, rows, max_new_tokens=5, eos_token_id=None, use_cache=False))
