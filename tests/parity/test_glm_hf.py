"""GLM-4 parity with transformers' GlmForCausalLM (both directions, greedy generation) and the
ChatGLM2/3 key layout (tiny state dicts written here), loaded by key mapping only."""

import json

import pytest
import torch
from safetensors.torch import save_file

import plmlab
from plmlab import PlmlabError, build_model

transformers = pytest.importorskip("transformers")
from transformers import GlmConfig, GlmForCausalLM  # noqa: E402

V = 101


def hf_glm(**kw):
    cfg = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, head_dim=16, max_position_embeddings=64, initializer_range=0.2,
               rms_norm_eps=1e-5, pad_token_id=0, eos_token_id=1)
    model = GlmForCausalLM(GlmConfig(**{**cfg, **kw}))
    with torch.no_grad():  # random norm weights too, so a swapped norm cannot pass unnoticed
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


def inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V, (2, 13), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding in the second row
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def logits(model, ids, mask, pos):
    with torch.no_grad():
        return model(ids, attention_mask=mask, position_ids=pos).logits


@pytest.mark.parametrize("kw", [{}, {"num_key_value_heads": 1, "attention_bias": False},
                                {"tie_word_embeddings": True, "head_dim": 32,
                                 "rope_parameters": {"rope_type": "default", "rope_theta": 5e5,
                                                     "partial_rotary_factor": 0.25}}],
                         ids=["gqa-bias", "mqa-nobias", "tied-headdim-quarter-rotary"])
def test_load_glm_then_save_back(kw, tmp_path):
    torch.manual_seed(0)
    hf = hf_glm(**kw)
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert ours.config.rotary_interleaved and ours.config.position == "rotary"
    ids, mask, pos = inputs()
    ref, out = logits(hf, ids, mask, pos), logits(ours, ids, mask, pos)
    assert ref.abs().max() > 1e-2
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-4, rtol=1e-4)

    plmlab.save_pretrained(ours, tmp_path / "back")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["model_type"] == "glm"
    hf2 = GlmForCausalLM.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(logits(hf2, ids, mask, pos)[keep], ref[keep], atol=1e-4, rtol=1e-4)


def test_save_glm4_tiny_then_load_in_transformers_and_generate(tmp_path):
    torch.manual_seed(0)
    ours = build_model("glm4-tiny", vocab_size=V, init_std=0.2).eval()
    plmlab.save_pretrained(ours, tmp_path / "ours")
    hf = GlmForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids, mask, pos = inputs()
    keep = mask.bool()
    torch.testing.assert_close(logits(hf, ids, mask, pos)[keep], logits(ours, ids, mask, pos)[keep],
                               atol=1e-4, rtol=1e-4)
    prompt = ids[:1]
    ref = hf.generate(prompt, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)[:, 13:]
    got = plmlab.generate(ours, prompt, max_new_tokens=12, eos_token_id=None)
    assert got.tolist() == ref.tolist()


def test_count_equals_transformers_for_glm4_9b():
    from plmlab import count_parameters
    from plmlab.hf import choose_adapter
    from plmlab.presets import get_preset

    config = get_preset("glm4-9b")
    assert choose_adapter(config).model_type == "glm"
    with torch.device("meta"):
        hf = GlmForCausalLM(GlmConfig(**{k: v for k, v in choose_adapter(config).config_to_hf(config).items()
                                         if k not in ("model_type", "architectures")}))
    assert count_parameters(config)["params"] == hf.num_parameters()


# --- ChatGLM2/3 layout -------------------------------------------------------------------------
CHATGLM_CONFIG = {
    "model_type": "chatglm", "architectures": ["ChatGLMModel"],
    "auto_map": {"AutoModel": "modeling_chatglm.ChatGLMForConditionalGeneration"},  # never executed
    "num_layers": 2, "hidden_size": 64, "ffn_hidden_size": 96, "kv_channels": 16, "num_attention_heads": 4,
    "multi_query_attention": True, "multi_query_group_num": 2, "padded_vocab_size": V, "seq_length": 64,
    "layernorm_epsilon": 1e-5, "rmsnorm": True, "apply_residual_connection_post_layernorm": False,
    "post_layer_norm": True, "add_bias_linear": False, "add_qkv_bias": True, "original_rope": True,
    "rope_ratio": 50, "tie_word_embeddings": False, "eos_token_id": 2, "pad_token_id": 0,
}


def chatglm_state(seed=0):
    """A tiny ChatGLM2-layout state dict: fused QKV [q 64; k 32; v 32], fused [gate; up]."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    state = {"transformer.embedding.word_embeddings.weight": r(V, 64),
             "transformer.encoder.final_layernorm.weight": 1 + r(64),
             "transformer.output_layer.weight": r(V, 64),
             "transformer.rotary_pos_emb.inv_freq": torch.ones(4)}  # a buffer ChatGLM saves
    for i in range(2):
        p = f"transformer.encoder.layers.{i}."
        state.update({p + "input_layernorm.weight": 1 + r(64), p + "post_attention_layernorm.weight": 1 + r(64),
                      p + "self_attention.query_key_value.weight": r(128, 64),
                      p + "self_attention.query_key_value.bias": r(128),
                      p + "self_attention.dense.weight": r(64, 64),
                      p + "mlp.dense_h_to_4h.weight": r(192, 64), p + "mlp.dense_4h_to_h.weight": r(64, 96)})
    return state


def write_chatglm(path, state, config=CHATGLM_CONFIG):
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def as_hf_glm(state):
    """The same weights under GlmForCausalLM's names, mapped by hand (how GLM-4 was converted)."""
    out = {"model.embed_tokens.weight": state["transformer.embedding.word_embeddings.weight"],
           "model.norm.weight": state["transformer.encoder.final_layernorm.weight"],
           "lm_head.weight": state["transformer.output_layer.weight"]}
    for i in range(2):
        p, h = f"transformer.encoder.layers.{i}.", f"model.layers.{i}."
        w, b = state[p + "self_attention.query_key_value.weight"], state[p + "self_attention.query_key_value.bias"]
        for name, rows in (("q", slice(0, 64)), ("k", slice(64, 96)), ("v", slice(96, 128))):
            out[h + f"self_attn.{name}_proj.weight"], out[h + f"self_attn.{name}_proj.bias"] = w[rows], b[rows]
        out[h + "self_attn.o_proj.weight"] = state[p + "self_attention.dense.weight"]
        out[h + "mlp.gate_up_proj.weight"] = state[p + "mlp.dense_h_to_4h.weight"]
        out[h + "mlp.down_proj.weight"] = state[p + "mlp.dense_4h_to_h.weight"]
        out[h + "input_layernorm.weight"] = state[p + "input_layernorm.weight"]
        out[h + "post_attention_layernorm.weight"] = state[p + "post_attention_layernorm.weight"]
    return out


def test_chatglm_layout_loads_by_key_mapping_and_matches_glm(tmp_path):
    state = chatglm_state()
    ours = plmlab.load_pretrained(write_chatglm(tmp_path / "chatglm", state))
    c = ours.config
    assert (c.n_kv_heads, c.dim_head, c.rotary_fraction, c.rope_theta, c.qkv_bias, c.out_bias) == (2, 16, 0.5, 5e5,
                                                                                                    True, False)
    hf = hf_glm(rope_parameters={"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.5})
    hf.load_state_dict(as_hf_glm(state))
    ids, mask, pos = inputs()
    keep = mask.bool()
    torch.testing.assert_close(logits(ours, ids, mask, pos)[keep], logits(hf, ids, mask, pos)[keep],
                               atol=1e-4, rtol=1e-4)


def test_chatglm_round_trip_keeps_every_key_and_tensor(tmp_path):
    state = chatglm_state(1)
    ours = plmlab.load_pretrained(write_chatglm(tmp_path / "chatglm", state))
    plmlab.save_pretrained(ours, tmp_path / "back", format="chatglm")
    from safetensors.torch import load_file

    back = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert set(back) == set(state) - {"transformer.rotary_pos_emb.inv_freq"}
    for k, v in back.items():
        torch.testing.assert_close(v, state[k], atol=0, rtol=0)
    cfg = json.loads((tmp_path / "back" / "config.json").read_text())
    assert cfg["model_type"] == "chatglm" and "auto_map" not in cfg
    again = plmlab.load_pretrained(tmp_path / "back")
    ids, mask, pos = inputs()
    torch.testing.assert_close(logits(again, ids, mask, pos), logits(ours, ids, mask, pos), atol=0, rtol=0)


def test_chatglm_errors(tmp_path):
    v1 = {"model_type": "chatglm", "num_layers": 2, "hidden_size": 64, "inner_hidden_size": 256,
          "num_attention_heads": 4, "vocab_size": V, "position_encoding_2d": True}
    with pytest.raises(PlmlabError, match="ChatGLM-6B \\(v1\\)"):
        plmlab.load_pretrained(write_chatglm(tmp_path / "v1", chatglm_state(), v1))
    extra = dict(chatglm_state(), **{"transformer.encoder.layers.0.self_attention.dense.bias": torch.zeros(64)})
    with pytest.raises(PlmlabError, match="does not know"):
        plmlab.load_pretrained(write_chatglm(tmp_path / "extra", extra))
    with pytest.raises(PlmlabError, match="chatglm layout cannot represent"):
        plmlab.save_pretrained(build_model("glm-tiny"), tmp_path / "bad", format="chatglm")
