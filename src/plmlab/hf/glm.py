"""GLM-4 (`GlmForCausalLM`, model_type "glm") and ChatGLM2/3 / GLM-4 in the authors' own layout
(model_type "chatglm"), loaded by key mapping alone: no remote code ever runs.

Both are the same network: RMSNorm pre-norm, rotary on the first half of each head with
interleaved pairs, SwiGLU with gate and up fused ([gate; up]), multi-query attention with a
bias on Q, K and V only, untied output. They differ in names:

    ours                        GlmForCausalLM (model.)            ChatGLM (transformer.)
    embed.tokens                embed_tokens                       embedding.word_embeddings
    layers.{i}.attn_norm        layers.{i}.input_layernorm         encoder.layers.{i}.input_layernorm
    layers.{i}.attn.qkv         self_attn.{q,k,v}_proj (split)     self_attention.query_key_value
    layers.{i}.attn.o           self_attn.o_proj                   self_attention.dense
    layers.{i}.mlp_norm         post_attention_layernorm           post_attention_layernorm
    layers.{i}.mlp.gate_up      mlp.gate_up_proj                   mlp.dense_h_to_4h
    layers.{i}.mlp.down         mlp.down_proj                      mlp.dense_4h_to_h
    decoder.norm                norm                               encoder.final_layernorm
    head.proj                   lm_head (top level)                output_layer

ChatGLM's fused `query_key_value` is already [Q (heads x d); K (groups x d); V (groups x d)],
our layout. Its rotary (apply_rotary_pos_emb: reshape to (..., rot/2, 2)) pairs dims (2i, 2i+1)
of the first half of each head with theta = 10000 x rope_ratio: `rotary_interleaved` with
`rotary_fraction` 0.5. ChatGLM-6B (v1: `transformer.layers.*`, per-head interleaved QKV,
2-D rotary, DeepNorm) is a different layout and is refused with a clear message.
"""

from __future__ import annotations

from ..config import Config
from ..errors import PlmlabError
from .adapter import Adapter, copy, require
from .hfconfig import ACT_HF, HFConfig
from .llama import llama_rules, llama_shape, rope_from_hf

GLM_CLASS = "GlmForCausalLM"
CHATGLM_CLASS = "ChatGLMForConditionalGeneration"


def glm_shape(c: Config, placement: str = "pre") -> str | None:
    """What GLM-4, ChatGLM2/3 and (with placement "sandwich") GLM-4-0414 all need (None when
    `c` has it)."""
    return require({
        "a decoder": c.arch == "decoder", "RMSNorm": c.norm == "rmsnorm",
        f"{placement}-norm with a final norm": c.norm_placement == placement and c.final_norm,
        "full attention (no sliding window)": c.sliding_window is None,
        "interleaved rotary positions": c.position == "rotary" and c.rotary_interleaved and not c.rope_scaling,
        "a gated MLP without bias": c.gated_mlp and c.activation in ACT_HF and not c.mlp_bias,
        "no bias on the attention output": not c.out_bias and not c.lm_head_bias,
        "an LM head": c.head == "lm" and c.attn_scale is None and c.output_scale is None,
        "no token types or factorisation": not c.type_vocab_size and c.embed_dim == c.d_model
        and not c.shared_layers and not c.embedding_norm,
    })


class Glm(Adapter):
    """transformers' `GlmForCausalLM` (GLM-4-9B converted to the LLaMA-like HF layout)."""

    def config_from_hf(self, hf: HFConfig) -> dict:
        rope = rope_from_hf(hf)
        params = HFConfig(hf.mapping("rope_parameters") or {}, f"{hf.source}: rope_parameters")
        fraction = params.number("partial_rotary_factor", hf.number("partial_rotary_factor", 0.5))
        if rope["rope_scaling"] is not None:
            rope["rope_scaling"] = {k: v for k, v in rope["rope_scaling"].items() if k != "partial_rotary_factor"}
            if rope["rope_scaling"].get("rope_type", "default") == "default":
                rope["rope_scaling"] = None
        return dict(
            arch="decoder", **llama_shape(hf, default_context=131072), d_ff=hf.integer("intermediate_size"),
            norm="rmsnorm", norm_eps=hf.number("rms_norm_eps", 1.5625e-7), norm_placement="pre", final_norm=True,
            position="rotary", **rope, rotary_fraction=fraction, rotary_interleaved=True,
            activation=hf.activation("hidden_act", "silu"), gated_mlp=True,
            qkv_bias=hf.flag("attention_bias", True), out_bias=False, mlp_bias=False,
            tie_embeddings=hf.flag("tie_word_embeddings", False), head="lm",
            attn_dropout=hf.number("attention_dropout", 0.0), init_std=hf.number("initializer_range", 0.02),
            scaled_residual_init=False, bos_token_id=hf.token_id("bos_token_id"),
            eos_token_id=hf.token_id("eos_token_id"), pad_token_id=hf.token_id("pad_token_id"), tokenizer="glm",
        )

    def config_to_hf(self, c: Config) -> dict:
        rope = {"rope_theta": c.rope_theta, "rope_type": "default", "partial_rotary_factor": c.rotary_fraction}
        return dict(
            model_type="glm", architectures=[GLM_CLASS], vocab_size=c.vocab_size, hidden_size=c.d_model,
            num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads, num_key_value_heads=c.kv_heads,
            head_dim=c.dim_head, intermediate_size=c.d_ff, max_position_embeddings=c.max_positions,
            rms_norm_eps=c.norm_eps, hidden_act=ACT_HF[c.activation], attention_bias=c.qkv_bias,
            tie_word_embeddings=c.tie_embeddings, attention_dropout=c.attn_dropout, initializer_range=c.init_std,
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
            rope_parameters=rope, rope_theta=c.rope_theta, partial_rotary_factor=c.rotary_fraction,
        )

    def mismatch(self, c: Config) -> str | None:
        return glm_shape(c)

    def rules(self, c: Config):
        return llama_rules(c, fused_gate_up=True)


class ChatGLM(Adapter):
    """The ChatGLM2/3-6B and GLM-4-9B (non-HF) checkpoints: `transformer.encoder.layers.*`."""

    def config_from_hf(self, hf: HFConfig) -> dict:
        if "inner_hidden_size" in hf or hf.data.get("position_encoding_2d") or "ffn_hidden_size" not in hf:
            raise PlmlabError("ChatGLM-6B (v1) checkpoints are not supported: plmlab maps the ChatGLM2/3 and "
                              "GLM-4 layout (transformer.encoder.layers.*); the chatglm-6b preset builds v1")
        if (hf.flag("apply_residual_connection_post_layernorm", False) or hf.flag("original_rope", True) is False
                or hf.flag("add_bias_linear", False) or hf.flag("rmsnorm", True) is False):
            raise PlmlabError("this ChatGLM config uses post-LN residuals, a non-original rotary, linear "
                              "biases or LayerNorm, which no released ChatGLM2/3 / GLM-4 does; plmlab does not map it")
        d_model, n_heads = hf.integer("hidden_size"), hf.integer("num_attention_heads")
        kv = hf.integer("multi_query_group_num", n_heads) if hf.flag("multi_query_attention", False) else n_heads
        head_dim = hf.integer("kv_channels", None) or (d_model // n_heads if n_heads else 0)
        return dict(
            arch="decoder", vocab_size=hf.integer("padded_vocab_size"), d_model=d_model,
            n_layers=hf.integer("num_layers"), n_heads=n_heads, n_kv_heads=kv,
            head_dim=None if head_dim * n_heads == d_model else head_dim,
            d_ff=hf.integer("ffn_hidden_size"), max_positions=hf.integer("seq_length", 32768),
            norm="rmsnorm", norm_eps=hf.number("layernorm_epsilon", 1e-5),
            norm_placement="pre", final_norm=hf.flag("post_layer_norm", True), position="rotary",
            rope_theta=10000.0 * hf.number("rope_ratio", 1.0), rotary_fraction=0.5, rotary_interleaved=True,
            activation="silu", gated_mlp=True, qkv_bias=hf.flag("add_qkv_bias", True),
            out_bias=False, mlp_bias=False,
            tie_embeddings=hf.flag("tie_word_embeddings", False), head="lm",
            attn_dropout=hf.number("attention_dropout", 0.0), dropout=hf.number("hidden_dropout", 0.0),
            scaled_residual_init=False, eos_token_id=hf.token_id("eos_token_id"),
            pad_token_id=hf.token_id("pad_token_id"), tokenizer="glm",
        )

    def config_to_hf(self, c: Config) -> dict:
        return dict(
            model_type="chatglm", architectures=[CHATGLM_CLASS], num_layers=c.n_layers,
            num_hidden_layers=c.n_layers, padded_vocab_size=c.vocab_size, vocab_size=c.vocab_size,
            hidden_size=c.d_model, ffn_hidden_size=c.d_ff, kv_channels=c.dim_head, num_attention_heads=c.n_heads,
            multi_query_attention=c.kv_heads != c.n_heads, multi_query_group_num=c.kv_heads,
            seq_length=c.max_positions, layernorm_epsilon=c.norm_eps, rmsnorm=c.norm == "rmsnorm",
            apply_residual_connection_post_layernorm=False, post_layer_norm=c.final_norm,
            add_bias_linear=c.out_bias, add_qkv_bias=c.qkv_bias, rope_ratio=c.rope_theta / 10000.0,
            original_rope=True, hidden_dropout=c.dropout, attention_dropout=c.attn_dropout,
            tie_word_embeddings=c.tie_embeddings, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        )

    def mismatch(self, c: Config) -> str | None:
        # ChatGLM's code rotates exactly half of each head and only knows SiLU.
        return glm_shape(c) or require({
            "rotary on half of each head": c.rotary_fraction == 0.5, "SwiGLU": c.activation == "silu",
        })

    def rules(self, c: Config):
        layer, hf = "decoder.layers.{i}.", "encoder.layers.{i}."
        rules = [
            copy("embed.tokens.weight", "embedding.word_embeddings.weight"),
            copy("decoder.norm.weight", "encoder.final_layernorm.weight"),
            copy(layer + "attn_norm.weight", hf + "input_layernorm.weight"),
            copy(layer + "mlp_norm.weight", hf + "post_attention_layernorm.weight"),
            copy(layer + "attn.qkv.weight", hf + "self_attention.query_key_value.weight"),
            copy(layer + "attn.o.weight", hf + "self_attention.dense.weight"),
            copy(layer + "mlp.gate_up.weight", hf + "mlp.dense_h_to_4h.weight"),
            copy(layer + "mlp.down.weight", hf + "mlp.dense_4h_to_h.weight"),
            copy("head.proj.weight", "output_layer.weight"),
        ]
        if c.qkv_bias:
            rules.append(copy(layer + "attn.qkv.bias", hf + "self_attention.query_key_value.bias"))
        return rules


GLM_ADAPTER = Glm("glm", "model.", ignored=("rotary_emb.inv_freq",))
# output_layer lives under `transformer.`, so no key is top-level.
CHATGLM_ADAPTER = ChatGLM("chatglm", "transformer.", ignored=("rotary_pos_emb.inv_freq",),
                          top_level=())

ADAPTERS = [GLM_ADAPTER, CHATGLM_ADAPTER]
