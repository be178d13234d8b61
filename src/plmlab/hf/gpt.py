"""GPT-2 (`GPT2LMHeadModel`) and OpenAI GPT (`OpenAIGPTLMHeadModel`, GPT-1) checkpoints."""

from __future__ import annotations

from ..config import Config
from .adapter import Adapter, copy, require, transposed
from .hfconfig import ACT_HF, HFConfig


class GPT2(Adapter):
    def config_from_hf(self, hf: HFConfig) -> dict:
        d_model = hf.integer("n_embd")
        return dict(
            arch="decoder", vocab_size=hf.integer("vocab_size"), d_model=d_model, n_layers=hf.integer("n_layer"),
            n_heads=hf.integer("n_head"), d_ff=hf.integer("n_inner", None) or 4 * d_model,
            max_positions=hf.integer("n_positions"), norm="layernorm", norm_eps=hf.number("layer_norm_epsilon", 1e-5),
            norm_placement="pre", final_norm=True, position="learned",
            activation=hf.activation("activation_function", "gelu_new"), qkv_bias=True, out_bias=True,
            mlp_bias=True, tie_embeddings=hf.flag("tie_word_embeddings", True), head="lm", **_dropouts(hf),
            bos_token_id=hf.token_id("bos_token_id"), eos_token_id=hf.token_id("eos_token_id"),
            pad_token_id=hf.token_id("pad_token_id"), tokenizer="gpt2",
        )

    def config_to_hf(self, c: Config) -> dict:
        return dict(
            model_type="gpt2", architectures=["GPT2LMHeadModel"], vocab_size=c.vocab_size,
            n_embd=c.d_model, n_layer=c.n_layers, n_head=c.n_heads, n_inner=c.d_ff, n_positions=c.max_positions,
            n_ctx=c.max_positions,  # transformers ignores it; llama.cpp's converter reads the context from it
            activation_function=ACT_HF[c.activation], layer_norm_epsilon=c.norm_eps,
            resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=c.attn_dropout,
            initializer_range=c.init_std, tie_word_embeddings=c.tie_embeddings,
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, pad_token_id=c.pad_token_id,
        )

    def mismatch(self, c: Config) -> str | None:
        return require({
            "a decoder": c.arch == "decoder", "LayerNorm with bias": c.norm == "layernorm" and c.norm_bias,
            "pre-LN with a final norm": c.norm_placement == "pre" and c.final_norm,
            "full attention (no sliding window)": c.sliding_window is None,
            "learned positions": c.position == "learned" and c.position_offset == 0,
            "multi-head attention": c.kv_heads == c.n_heads and c.head_dim in (None, c.d_model // c.n_heads),
            "biases everywhere": c.qkv_bias and c.out_bias and c.mlp_bias and not c.lm_head_bias,
            "a plain MLP": not c.gated_mlp and c.activation in ACT_HF,
            "an LM head": c.head == "lm" and c.attn_scale is None and c.output_scale is None,
            "no token types or factorisation": not c.type_vocab_size and c.embed_dim == c.d_model
            and not c.shared_layers and not c.embedding_norm,
        })

    def rules(self, c: Config):
        rules = [
            copy("embed.tokens.weight", "wte.weight"),
            copy("embed.positions.weight", "wpe.weight"),
            copy("decoder.norm.weight", "ln_f.weight"),
            copy("decoder.norm.bias", "ln_f.bias"),
        ]
        layer = "decoder.layers.{i}."
        hf = "h.{i}."
        for ours, theirs in (("attn_norm", "ln_1"), ("mlp_norm", "ln_2")):
            rules += [copy(layer + ours + ".weight", hf + theirs + ".weight"),
                      copy(layer + ours + ".bias", hf + theirs + ".bias")]
        for ours, theirs in (("attn.qkv", "attn.c_attn"), ("attn.o", "attn.c_proj"),
                             ("mlp.up", "mlp.c_fc"), ("mlp.down", "mlp.c_proj")):
            rules += [transposed(layer + ours + ".weight", hf + theirs + ".weight"),
                      copy(layer + ours + ".bias", hf + theirs + ".bias")]
        rules.append(copy("head.proj.weight", "lm_head.weight"))
        return rules


class OpenAIGPT(GPT2):
    """GPT-1: post-LN, no final norm, 4x MLP, and its own key names."""

    def config_from_hf(self, hf: HFConfig) -> dict:
        d_model = hf.integer("n_embd")
        return dict(
            arch="decoder", vocab_size=hf.integer("vocab_size"), d_model=d_model, n_layers=hf.integer("n_layer"),
            n_heads=hf.integer("n_head"), d_ff=4 * d_model, max_positions=hf.integer("n_positions"),
            norm="layernorm", norm_eps=hf.number("layer_norm_epsilon", 1e-5), norm_placement="post",
            final_norm=False, position="learned", activation=hf.activation("afn", "gelu"), qkv_bias=True,
            out_bias=True, mlp_bias=True, tie_embeddings=True, head="lm", **_dropouts(hf),
            scaled_residual_init=False, bos_token_id=hf.token_id("bos_token_id"),
            eos_token_id=hf.token_id("eos_token_id"), pad_token_id=hf.token_id("pad_token_id"), tokenizer="gpt2",
        )

    def config_to_hf(self, c: Config) -> dict:
        return dict(
            model_type="openai-gpt", architectures=["OpenAIGPTLMHeadModel"], vocab_size=c.vocab_size,
            n_embd=c.d_model, n_layer=c.n_layers, n_head=c.n_heads, n_positions=c.max_positions,
            afn=ACT_HF[c.activation], layer_norm_epsilon=c.norm_eps, resid_pdrop=c.dropout,
            embd_pdrop=c.dropout, attn_pdrop=c.attn_dropout, initializer_range=c.init_std,
            tie_word_embeddings=True, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
            pad_token_id=c.pad_token_id,
        )

    def mismatch(self, c: Config) -> str | None:
        gpt2_like = c.replace(norm_placement="pre", final_norm=True)
        return super().mismatch(gpt2_like) or require({
            "post-LN without a final norm": c.norm_placement == "post" and not c.final_norm,
            "an MLP of 4 x d_model": c.d_ff == 4 * c.d_model, "tied output": c.tie_embeddings,
        })

    def rules(self, c: Config):
        rename = {"wte.": "tokens_embed.", "wpe.": "positions_embed."}
        rules = [r for r in super().rules(c) if not r.ours.startswith("decoder.norm")]
        for r in rules:
            r.theirs = tuple(next((t.replace(a, b, 1) for a, b in rename.items() if t.startswith(a)), t)
                             for t in r.theirs)
        return rules


def _dropouts(hf: HFConfig) -> dict:
    """GPT-1 and GPT-2 name their dropouts and initialisation alike."""
    return dict(dropout=hf.number("resid_pdrop", 0.1), attn_dropout=hf.number("attn_pdrop", 0.1),
                init_std=hf.number("initializer_range", 0.02))


GPT2_ADAPTER = GPT2("gpt2", "transformer.", ignored=(".attn.bias", ".attn.masked_bias"))
OPENAI_GPT_ADAPTER = OpenAIGPT("openai-gpt", "transformer.")

ADAPTERS = [GPT2_ADAPTER, OPENAI_GPT_ADAPTER]
