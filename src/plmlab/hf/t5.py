"""T5 v1.0 / v1.1 checkpoints: `T5ForConditionalGeneration`, `T5Model` and `T5EncoderModel`.

One `model_type` ("t5") covers three head layouts; the checkpoint's `architectures` picks the
skeleton (T5EncoderModel -> our encoder without a head, T5Model -> encoder-decoder without a
head). Layer names (`block.{i}.layer.{k}`): k = 0 self-attention, k = 1 cross-attention in the
decoder, the feed-forward sub-layer last.

Output tying and scaling. Old configs say `tie_word_embeddings: false` for v1.1. transformers
5.x turns that into `scale_decoder_outputs = false` and then forces `tie_word_embeddings = true`,
tying `lm_head` to `shared` unless the checkpoint carries a *different* `lm_head.weight`.
So here: the scaling comes from `scale_decoder_outputs` (or, in old configs, from
`tie_word_embeddings`), and whether the output is tied from the checkpoint itself (`refine`):
untied exactly when it stores an `lm_head.weight` that differs from `shared.weight`. On save,
an untied model writes both tensors and `tie_word_embeddings: false`.
"""

from __future__ import annotations

import torch

from ..config import Config
from .adapter import Adapter, copy, fused_halves, fused_qkv, require
from .hfconfig import ACT_HF, HF_ACT, HFConfig

GENERATION = "T5ForConditionalGeneration"
BASE = "T5Model"
ENCODER = "T5EncoderModel"


class T5(Adapter):
    def config_from_hf(self, hf: HFConfig) -> dict:
        arch = hf.architecture(GENERATION)
        act = hf.string("feed_forward_proj", "relu")
        scale = hf.flag("scale_decoder_outputs", hf.flag("tie_word_embeddings", True) is not False)
        d_model, n_layers, dropout = hf.integer("d_model"), hf.integer("num_layers"), hf.number("dropout_rate", 0.1)
        return dict(
            arch="encoder" if arch == ENCODER else "encoder-decoder",
            vocab_size=hf.integer("vocab_size"), d_model=d_model, n_layers=n_layers,
            n_decoder_layers=hf.integer("num_decoder_layers", None) or n_layers, n_heads=hf.integer("num_heads"),
            head_dim=hf.integer("d_kv"), d_ff=hf.integer("d_ff"), max_positions=hf.integer("n_positions", 512),
            norm="rmsnorm", norm_eps=hf.number("layer_norm_epsilon", 1e-6), norm_placement="pre",
            final_norm=True, position="relative",
            relative_buckets=hf.integer("relative_attention_num_buckets", 32),
            relative_max_distance=hf.integer("relative_attention_max_distance", 128),
            qkv_bias=False, out_bias=False, mlp_bias=False, attn_scale=1.0,
            activation=_activation(act, hf), gated_mlp=act.startswith("gated-"),
            head="lm" if arch == GENERATION else "none",
            tie_embeddings=True, output_scale=d_model ** -0.5 if scale and arch == GENERATION and d_model > 0 else None,
            dropout=dropout, attn_dropout=dropout, scaled_residual_init=False,
            pad_token_id=hf.token_id("pad_token_id", 0), eos_token_id=hf.token_id("eos_token_id", 1),
            decoder_start_token_id=hf.token_id("decoder_start_token_id", hf.token_id("pad_token_id", 0)),
            tokenizer="t5",
        )

    def refine(self, config: Config, reader) -> Config:
        """Untie the output when the checkpoint stores its own, different `lm_head.weight`."""
        keys = set(reader.keys())
        if config.head != "lm" or "lm_head.weight" not in keys or "shared.weight" not in keys:
            return config
        if torch.equal(reader.get("lm_head.weight"), reader.get("shared.weight")):
            return config
        return config.replace(tie_embeddings=False)

    def config_to_hf(self, c: Config) -> dict:
        arch = ENCODER if c.arch == "encoder" else GENERATION if c.head == "lm" else BASE
        act = (GATED_ACT_HF if c.gated_mlp else ACT_HF)[c.activation]
        return dict(
            model_type="t5", architectures=[arch], vocab_size=c.vocab_size, d_model=c.d_model,
            d_kv=c.dim_head, d_ff=c.d_ff, num_layers=c.n_layers, num_decoder_layers=c.decoder_layers,
            num_heads=c.n_heads, relative_attention_num_buckets=c.relative_buckets,
            relative_attention_max_distance=c.relative_max_distance, dropout_rate=c.dropout,
            layer_norm_epsilon=c.norm_eps, feed_forward_proj=act,
            is_encoder_decoder=c.arch == "encoder-decoder", tie_word_embeddings=c.tie_embeddings,
            scale_decoder_outputs=c.output_scale is not None, n_positions=c.max_positions,
            pad_token_id=c.pad_token_id, eos_token_id=c.eos_token_id,
            decoder_start_token_id=c.decoder_start_token_id,
        )

    def mismatch(self, c: Config) -> str | None:
        return require({
            "an encoder-decoder with an LM head or none, or an encoder without a head":
                (c.arch == "encoder-decoder" and c.head in ("lm", "none")) or (c.arch == "encoder" and c.head == "none"),
            "pre-norm RMSNorm with a final norm": c.norm == "rmsnorm" and c.norm_placement == "pre" and c.final_norm,
            "relative position buckets": c.position == "relative",
            "no biases, unscaled attention": not (c.qkv_bias or c.out_bias or c.mlp_bias or c.lm_head_bias)
            and c.attn_scale == 1.0 and c.kv_heads == c.n_heads,
            "an activation T5 names": c.activation in (GATED_ACT_HF if c.gated_mlp else ACT_HF),
            "no output scale or d_model ** -0.5": c.output_scale is None or abs(c.output_scale - c.d_model ** -0.5) < 1e-12,
            "no token types, pooler or factorisation": not c.type_vocab_size and c.embed_dim == c.d_model
            and not c.shared_layers and not c.embedding_norm and not c.pooler,
        })

    def rules(self, c: Config):
        rules = [copy("embed.tokens.weight", "shared.weight")]
        rules += _stack("encoder", "{i}", c, cross=False)
        if c.arch == "encoder-decoder":
            rules += _stack("decoder", "{j}", c, cross=True)
            rules.append(copy("head.proj.weight", "lm_head.weight"))
        return rules


def _stack(name: str, i: str, c: Config, cross: bool) -> list:
    ours, hf = f"{name}.layers.{i}.", f"{name}.block.{i}.layer."
    ff = "2" if cross else "1"  # the feed-forward sub-layer comes last
    rules = [
        copy(f"{name}.relative.bias.weight", f"{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
        copy(f"{name}.norm.weight", f"{name}.final_layer_norm.weight"),
        copy(ours + "attn_norm.weight", hf + "0.layer_norm.weight"),
        fused_qkv(ours + "attn.qkv.weight", *(hf + f"0.SelfAttention.{p}.weight" for p in "qkv")),
        copy(ours + "attn.o.weight", hf + "0.SelfAttention.o.weight"),
        copy(ours + "mlp_norm.weight", hf + ff + ".layer_norm.weight"),
        copy(ours + "mlp.down.weight", hf + ff + ".DenseReluDense.wo.weight"),
    ]
    if c.gated_mlp:  # v1.1: act(wi_0 x) * wi_1 x; ours stacks [gate; up]
        rules.append(fused_halves(ours + "mlp.gate_up.weight", hf + ff + ".DenseReluDense.wi_0.weight",
                                  hf + ff + ".DenseReluDense.wi_1.weight"))
    else:
        rules.append(copy(ours + "mlp.up.weight", hf + ff + ".DenseReluDense.wi.weight"))
    if cross:
        rules += [
            copy(ours + "cross_norm.weight", hf + "1.layer_norm.weight"),
            copy(ours + "cross.q.weight", hf + "1.EncDecAttention.q.weight"),
            fused_halves(ours + "cross.kv.weight", hf + "1.EncDecAttention.k.weight", hf + "1.EncDecAttention.v.weight"),
            copy(ours + "cross.o.weight", hf + "1.EncDecAttention.o.weight"),
        ]
    return rules


def _activation(feed_forward_proj: str, hf: HFConfig) -> str:
    """`feed_forward_proj` ("relu", "gated-gelu" ...) -> ours. "gated-gelu" is v1.1's tanh GELU
    (transformers keeps it as "gelu_new" for backward compatibility); a plain "gelu" is the exact one."""
    if feed_forward_proj == "gated-gelu":
        return "gelu_tanh"
    name = feed_forward_proj.split("-")[-1]
    if name not in HF_ACT:
        raise hf.error(f"feed_forward_proj={feed_forward_proj!r} is not supported")
    return HF_ACT[name]


GATED_ACT_HF = {"gelu_tanh": "gated-gelu", "relu": "gated-relu", "silu": "gated-silu"}

T5_ADAPTER = T5(
    "t5", "",
    # Old checkpoints store each stack's copy of the shared embedding, and an unused relative
    # bias in the decoder's first cross-attention.
    ignored=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight",
             "EncDecAttention.relative_attention_bias.weight"),
)

ADAPTERS = [T5_ADAPTER]
