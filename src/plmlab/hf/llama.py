"""LLaMA 1/2/3 (`LlamaForCausalLM`) checkpoints."""

from __future__ import annotations

from ..config import Config
from .adapter import Adapter, copy, fused_halves, fused_qkv, require
from .hfconfig import ACT_HF, HFConfig


def rope_from_hf(hf: HFConfig) -> dict:
    """transformers 5 keeps rope settings in `rope_parameters`; 4.x in rope_theta/rope_scaling."""
    params = HFConfig(hf.mapping("rope_parameters") or {}, f"{hf.source}: rope_parameters")
    theta = params.number("rope_theta", hf.number("rope_theta", 10000.0))
    scaled = params.string("rope_type", "default") != "default"
    scaling = hf.mapping("rope_scaling") or (params.data if scaled else None)
    if scaling is not None:
        scaling = {k: v for k, v in scaling.items() if k != "rope_theta"}
    return {"rope_theta": theta, "rope_scaling": scaling}


def rope_to_hf(c: Config) -> dict:
    params = {"rope_theta": c.rope_theta, "rope_type": "default", **(c.rope_scaling or {})}
    return {"rope_parameters": params, "rope_theta": c.rope_theta}


class Llama(Adapter):
    def config_from_hf(self, hf: HFConfig) -> dict:
        bias = hf.flag("attention_bias", False)
        return dict(
            arch="decoder", **llama_shape(hf, default_context=2048), d_ff=hf.integer("intermediate_size"),
            norm="rmsnorm", norm_eps=hf.number("rms_norm_eps", 1e-6), norm_placement="pre", final_norm=True,
            position="rotary", **rope_from_hf(hf), activation=hf.activation("hidden_act", "silu"),
            gated_mlp=True, qkv_bias=bias, out_bias=bias, mlp_bias=hf.flag("mlp_bias", False),
            tie_embeddings=hf.flag("tie_word_embeddings", False), head="lm",
            attn_dropout=hf.number("attention_dropout", 0.0), init_std=hf.number("initializer_range", 0.02),
            scaled_residual_init=False, bos_token_id=hf.token_id("bos_token_id"),
            eos_token_id=hf.token_id("eos_token_id"), pad_token_id=hf.token_id("pad_token_id"), tokenizer="llama",
        )

    def config_to_hf(self, c: Config) -> dict:
        return dict(
            model_type="llama", architectures=["LlamaForCausalLM"], vocab_size=c.vocab_size,
            hidden_size=c.d_model, num_hidden_layers=c.n_layers, num_attention_heads=c.n_heads,
            num_key_value_heads=c.kv_heads, head_dim=c.dim_head, intermediate_size=c.d_ff,
            max_position_embeddings=c.max_positions, rms_norm_eps=c.norm_eps, hidden_act=ACT_HF[c.activation],
            attention_bias=c.qkv_bias, mlp_bias=c.mlp_bias, tie_word_embeddings=c.tie_embeddings,
            attention_dropout=c.attn_dropout, initializer_range=c.init_std, bos_token_id=c.bos_token_id,
            eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id, **rope_to_hf(c),
        )

    def mismatch(self, c: Config) -> str | None:
        return require({**llama_checks(c), "equal attention biases": c.qkv_bias == c.out_bias,
                        "full attention (no sliding window)": c.sliding_window is None})

    def rules(self, c: Config):
        return llama_rules(c)


def llama_checks(c: Config) -> dict[str, bool]:
    """What LlamaForCausalLM and its near copies (Mistral, Qwen2) all need; each adds its biases
    and its attention window."""
    return {
        "a decoder": c.arch == "decoder", "RMSNorm": c.norm == "rmsnorm",
        "pre-norm with a final norm": c.norm_placement == "pre" and c.final_norm,
        "full rotate-half rotary positions": c.position == "rotary" and c.rotary_fraction == 1.0
        and not c.rotary_interleaved,
        "a gated MLP": c.gated_mlp and c.activation in ACT_HF,
        "an LM head without bias": c.head == "lm" and not c.lm_head_bias and c.attn_scale is None
        and c.output_scale is None,
        "no token types or factorisation": not c.type_vocab_size and c.embed_dim == c.d_model
        and not c.shared_layers and not c.embedding_norm,
    }


def llama_rules(c: Config, fused_gate_up: bool = False) -> list:
    """The `model.layers.{i}` table of LlamaForCausalLM, shared by GlmForCausalLM, whose only
    differences are a stored fused `gate_up_proj` and biases on Q, K, V but not on O."""
    layer, hf = "decoder.layers.{i}.", "layers.{i}."
    gate_up = (copy(layer + "mlp.gate_up.weight", hf + "mlp.gate_up_proj.weight") if fused_gate_up  # [gate; up]
               else fused_halves(layer + "mlp.gate_up.weight", hf + "mlp.gate_proj.weight", hf + "mlp.up_proj.weight"))
    rules = [
        copy("embed.tokens.weight", "embed_tokens.weight"),
        copy("decoder.norm.weight", "norm.weight"),
        copy(layer + "attn_norm.weight", hf + "input_layernorm.weight"),
        copy(layer + "mlp_norm.weight", hf + "post_attention_layernorm.weight"),
        fused_qkv(layer + "attn.qkv.weight", *(hf + f"self_attn.{p}_proj.weight" for p in "qkv")),
        copy(layer + "attn.o.weight", hf + "self_attn.o_proj.weight"),
        gate_up,
        copy(layer + "mlp.down.weight", hf + "mlp.down_proj.weight"),
        copy("head.proj.weight", "lm_head.weight"),
    ]
    if c.qkv_bias:
        rules.append(fused_qkv(layer + "attn.qkv.bias", *(hf + f"self_attn.{p}_proj.bias" for p in "qkv")))
    if c.out_bias:
        rules.append(copy(layer + "attn.o.bias", hf + "self_attn.o_proj.bias"))
    if c.mlp_bias:
        rules += [fused_halves(layer + "mlp.gate_up.bias", hf + "mlp.gate_proj.bias", hf + "mlp.up_proj.bias"),
                  copy(layer + "mlp.down.bias", hf + "mlp.down_proj.bias")]
    return rules


def llama_shape(hf: HFConfig, default_context: int) -> dict:
    """Sizes named alike by LlamaConfig and GlmConfig; head_dim is kept only where it differs
    from hidden_size / heads (GLM-4 and some LLaMA variants set it apart)."""
    d_model, n_heads = hf.integer("hidden_size"), hf.integer("num_attention_heads")
    head_dim = hf.integer("head_dim", None) or (d_model // n_heads if n_heads else 0)
    return dict(vocab_size=hf.integer("vocab_size"), d_model=d_model, n_layers=hf.integer("num_hidden_layers"),
                n_heads=n_heads, n_kv_heads=hf.integer("num_key_value_heads", None) or n_heads,
                head_dim=None if head_dim * n_heads == d_model else head_dim,
                max_positions=hf.integer("max_position_embeddings", default_context))


LLAMA_ADAPTER = Llama("llama", "model.", ignored=("rotary_emb.inv_freq",))

ADAPTERS = [LLAMA_ADAPTER]
