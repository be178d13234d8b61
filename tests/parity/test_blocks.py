"""Unit tests for the shared blocks: norms, rotary, masks, attention, KV cache."""

import pytest
import torch
import torch.nn.functional as F

from plmlab import Config, build_model
from plmlab.masks import build_mask
from plmlab.nn.attention import AttentionContext, SelfAttention
from plmlab.nn.norm import LayerNorm, RMSNorm
from plmlab.nn.position import Rotary

torch.manual_seed(0)


def test_layernorm_matches_torch():
    x = torch.randn(2, 5, 16)
    ln = LayerNorm(16, eps=1e-5)
    torch.nn.init.normal_(ln.weight)
    torch.nn.init.normal_(ln.bias)
    torch.testing.assert_close(ln(x), F.layer_norm(x, (16,), ln.weight, ln.bias, 1e-5))


def test_rmsnorm_matches_formula_and_hf():
    x = torch.randn(2, 5, 16) * 3
    norm = RMSNorm(16, eps=1e-6)
    torch.nn.init.normal_(norm.weight)
    expected = norm.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))
    torch.testing.assert_close(norm(x), expected)
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    ref = llama.LlamaRMSNorm(16, eps=1e-6)
    ref.weight.data.copy_(norm.weight.data)
    torch.testing.assert_close(norm(x), ref(x))


def _hf_rope(x, cos, sin, rotate):
    return x * cos + rotate(x) * sin


def test_rotary_rotate_half_matches_hf_llama():
    llama = pytest.importorskip("transformers.models.llama.modeling_llama")
    c = Config(d_model=64, n_heads=4, position="rotary", rope_theta=10000.0)
    rot = Rotary(c)
    pos = torch.tensor([[0, 1, 2, 7, 100]])
    q, k = torch.randn(1, 4, 5, 16), torch.randn(1, 4, 5, 16)
    cos, sin = rot(pos)
    inv = 1.0 / (10000 ** (torch.arange(0, 16, 2).float() / 16))
    freqs = pos[0, :, None].float() * inv
    emb = torch.cat((freqs, freqs), -1)
    q_ref, k_ref = llama.apply_rotary_pos_emb(q, k, emb.cos()[None], emb.sin()[None])
    torch.testing.assert_close(rot.rotate(q, cos, sin), q_ref)
    torch.testing.assert_close(rot.rotate(k, cos, sin), k_ref)


def test_partial_interleaved_rotary_matches_hf_glm():
    glm = pytest.importorskip("transformers.models.glm.modeling_glm")
    c = Config(d_model=64, n_heads=4, position="rotary", rotary_fraction=0.5, rotary_interleaved=True)
    rot = Rotary(c)
    pos = torch.arange(6)[None]
    q, k = torch.randn(1, 4, 6, 16), torch.randn(1, 4, 6, 16)
    cos, sin = rot(pos)
    inv = 1.0 / (10000 ** (torch.arange(0, 8, 2).float() / 8))
    emb = torch.cat((pos[0, :, None] * inv,) * 2, -1)
    q_ref, k_ref = glm.apply_rotary_pos_emb(q, k, emb.cos()[None], emb.sin()[None])
    torch.testing.assert_close(rot.rotate(q, cos, sin), q_ref)
    torch.testing.assert_close(rot.rotate(k, cos, sin), k_ref)


def test_llama3_rope_scaling_matches_hf():
    rope = pytest.importorskip("transformers.modeling_rope_utils")
    from transformers import LlamaConfig

    from plmlab.nn.position import rope_inv_freq

    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 8192}
    hf = LlamaConfig(hidden_size=256, num_attention_heads=2, rope_parameters={"rope_theta": 500000.0, **scaling})
    ref, _ = rope.ROPE_INIT_FUNCTIONS["llama3"](hf, "cpu")
    ours = rope_inv_freq(Config(d_model=256, n_heads=2, position="rotary", rope_theta=500000.0, rope_scaling=scaling))
    torch.testing.assert_close(ours, ref.float())


def test_masks_causal_padding_and_explicit():
    assert build_mask(4, 4, causal=True) == (None, True)
    assert build_mask(1, 9, causal=True) == (None, False)
    assert build_mask(4, 4, causal=False) == (None, False)
    mask, fused = build_mask(2, 5, causal=True)  # two new queries after 3 cached keys
    assert not fused and mask[0, 0].tolist() == [[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]]
    pad = torch.tensor([[0, 1, 1]])
    mask, _ = build_mask(3, 3, causal=True, padding=pad)
    # the padding query sees nothing real: it is given all keys rather than a NaN row
    assert mask[0, 0].tolist() == [[1, 1, 1], [0, 1, 0], [0, 1, 1]]
    explicit = torch.tensor([[[1, 1, 0], [1, 1, 0], [1, 1, 1]]])
    mask, _ = build_mask(3, 3, causal=False, explicit=explicit)
    assert mask[0, 0].tolist() == explicit[0].bool().tolist()


def test_gqa_equals_mha_when_kv_heads_repeat():
    """A GQA layer equals an MHA layer whose K/V heads are the GQA heads repeated per group."""
    c_gqa = Config(d_model=32, n_heads=4, n_kv_heads=2, qkv_bias=False, position="none")
    c_mha = c_gqa.replace(n_kv_heads=None)
    gqa, mha = SelfAttention(c_gqa), SelfAttention(c_mha)
    q, k, v = gqa.qkv.weight.split([32, 16, 16])
    rep = lambda w: w.view(2, 8, 32).repeat_interleave(2, dim=0).reshape(32, 32)  # noqa: E731
    mha.qkv.weight.data.copy_(torch.cat([q, rep(k), rep(v)]))
    mha.o.load_state_dict(gqa.o.state_dict())
    x = torch.randn(2, 7, 32)
    ctx = AttentionContext(is_causal=True)
    torch.testing.assert_close(gqa(x, ctx, 0), mha(x, ctx, 0))


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny"])
def test_cached_forward_equals_full_forward(preset):
    model = build_model(preset).eval()
    ids = torch.randint(0, model.config.vocab_size, (2, 12))
    with torch.no_grad():
        full = model(ids).logits
        cache = model.new_cache(2, 16)
        first = model(ids[:, :7], cache=cache).logits
        rest = [model(ids[:, t : t + 1], cache=cache).logits for t in range(7, 12)]
    torch.testing.assert_close(torch.cat([first, *rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_shared_layers_apply_one_block_n_times():
    c = Config(arch="encoder", d_model=32, n_heads=4, d_ff=64, n_layers=3, shared_layers=True, vocab_size=50,
               head="none", position="learned", max_positions=16)
    model = build_model(c)
    assert len(model.encoder.layers) == 1
    x = torch.randint(0, 50, (1, 5))
    assert model(x).last_hidden_state.shape == (1, 5, 32)
