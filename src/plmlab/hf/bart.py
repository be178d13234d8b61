"""BART checkpoints (Lewis et al. 2019): `BartForConditionalGeneration` and `BartModel`.

transformers' modeling_bart, as plmlab's encoder-decoder with data switches:

  model.shared                      embed.tokens          one token table, tied to lm_head
  model.encoder.embed_positions     embed.positions       learned, ids + 2 (1024 + 2 rows)
  model.encoder.layernorm_embedding embed.norm
  model.decoder.embed_positions     decoder_embed.positions   (per_stack_embeddings)
  model.decoder.layernorm_embedding decoder_embed.norm
  layers: self_attn / encoder_attn / fc1 fc2, each followed by its LayerNorm (post-LN), no
  final norm; final_logits_bias (1, V), a buffer added to the logits = head.proj.bias.

On save, `forced_eos_token_id` is written as null: BartConfig's default (2) makes transformers'
`generate` force EOS at the length limit, which plmlab's `generate` does not do, and the saved
model should decode the same in both.
"""

from __future__ import annotations

from ..config import Config
from .adapter import Adapter, Rule, copy, fused_halves, fused_qkv, require
from .hfconfig import ACT_HF, HFConfig

GENERATION = "BartForConditionalGeneration"
BASE = "BartModel"
POSITION_OFFSET = 2  # BartLearnedPositionalEmbedding.offset


def _bias_row(ts, c: Config):
    return ts[0].reshape(-1)  # final_logits_bias (1, V) -> (V,)


def _bias_unrow(t, c: Config):
    return [t.reshape(1, -1)]


def _both(ours: str, theirs: str) -> list[Rule]:
    return [copy(f"{ours}.weight", f"{theirs}.weight"), copy(f"{ours}.bias", f"{theirs}.bias")]


class Bart(Adapter):
    def config_from_hf(self, hf: HFConfig) -> dict:
        head = "lm" if hf.architecture(GENERATION) == GENERATION else "none"
        n_heads, d_ff = hf.integer("encoder_attention_heads"), hf.integer("encoder_ffn_dim")
        for key, value in (("decoder_attention_heads", n_heads), ("decoder_ffn_dim", d_ff)):
            if hf.integer(key, value) != value:
                raise hf.error(f"{key}={hf.data[key]} differs from the encoder's {value}: plmlab builds both "
                               "stacks of one width and head count")
        return dict(
            arch="encoder-decoder", vocab_size=hf.integer("vocab_size"), d_model=hf.integer("d_model"),
            n_layers=hf.integer("encoder_layers"), n_decoder_layers=hf.integer("decoder_layers"),
            n_heads=n_heads, d_ff=d_ff, max_positions=hf.integer("max_position_embeddings", 1024),
            norm="layernorm", norm_eps=1e-5, norm_placement="post", final_norm=False, embedding_norm=True,
            per_stack_embeddings=True, scale_embedding=hf.flag("scale_embedding", False),
            position="learned", position_offset=POSITION_OFFSET,
            qkv_bias=True, out_bias=True, mlp_bias=True, activation=hf.activation("activation_function", "gelu"),
            gated_mlp=False, head=head, tie_embeddings=True, lm_head_bias=head == "lm",
            dropout=hf.number("dropout", 0.1), attn_dropout=hf.number("attention_dropout", 0.0),
            init_std=hf.number("init_std", 0.02), scaled_residual_init=False,
            pad_token_id=hf.token_id("pad_token_id", 1), bos_token_id=hf.token_id("bos_token_id", 0),
            eos_token_id=hf.token_id("eos_token_id", 2),
            decoder_start_token_id=hf.token_id("decoder_start_token_id", 2), tokenizer="bart",
        )

    def config_to_hf(self, c: Config) -> dict:
        return dict(
            model_type="bart", architectures=[GENERATION if c.head == "lm" else BASE],
            vocab_size=c.vocab_size, d_model=c.d_model, encoder_layers=c.n_layers, decoder_layers=c.decoder_layers,
            encoder_attention_heads=c.n_heads, decoder_attention_heads=c.n_heads,
            encoder_ffn_dim=c.d_ff, decoder_ffn_dim=c.d_ff, max_position_embeddings=c.max_positions,
            activation_function=ACT_HF[c.activation], dropout=c.dropout, attention_dropout=c.attn_dropout,
            activation_dropout=0.0, init_std=c.init_std, scale_embedding=c.scale_embedding,
            is_encoder_decoder=True, tie_word_embeddings=True, forced_eos_token_id=None,
            pad_token_id=c.pad_token_id, bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id,
            decoder_start_token_id=c.decoder_start_token_id,
        )

    def mismatch(self, c: Config) -> str | None:
        return require({
            "an encoder-decoder with an LM head or none": c.arch == "encoder-decoder" and c.head in ("lm", "none"),
            "post-norm LayerNorm (eps 1e-5) without a final norm": c.norm == "layernorm" and c.norm_bias
            and c.norm_placement == "post" and not c.final_norm and c.norm_eps == 1e-5,
            "per-stack learned positions from row 2 with an embedding norm": c.position == "learned"
            and c.position_offset == POSITION_OFFSET and c.per_stack_embeddings and c.embedding_norm,
            "biases everywhere, scaled attention": c.qkv_bias and c.out_bias and c.mlp_bias
            and c.attn_scale is None and c.kv_heads == c.n_heads and c.dim_head * c.n_heads == c.d_model,
            "an ungated MLP with an activation BART names": not c.gated_mlp and c.activation in ACT_HF,
            "tied embeddings with the logits bias": c.tie_embeddings and c.output_scale is None
            and c.lm_head_bias == (c.head == "lm"),
            "no token types, pooler or factorisation": not c.type_vocab_size and c.embed_dim == c.d_model
            and not c.shared_layers and not c.pooler and c.classifier == "none",
        })

    def rules(self, c: Config) -> list[Rule]:
        rules = [copy("embed.tokens.weight", "shared.weight"),
                 copy("embed.positions.weight", "encoder.embed_positions.weight"),
                 *_both("embed.norm", "encoder.layernorm_embedding"),
                 copy("decoder_embed.positions.weight", "decoder.embed_positions.weight"),
                 *_both("decoder_embed.norm", "decoder.layernorm_embedding")]
        rules += _layer("encoder.layers.{i}.", "encoder.layers.{i}.", cross=False)
        rules += _layer("decoder.layers.{j}.", "decoder.layers.{j}.", cross=True)
        if c.head == "lm":
            rules += [copy("head.proj.weight", "lm_head.weight"),
                      Rule("head.proj.bias", ("final_logits_bias",), _bias_row, _bias_unrow)]
        return rules


def _layer(ours: str, hf: str, cross: bool) -> list[Rule]:
    attn = hf + "self_attn."
    rules = [
        fused_qkv(ours + "attn.qkv.weight", *(attn + f"{p}_proj.weight" for p in "qkv")),
        fused_qkv(ours + "attn.qkv.bias", *(attn + f"{p}_proj.bias" for p in "qkv")),
        *_both(ours + "attn.o", attn + "out_proj"),
        *_both(ours + "attn_norm", hf + "self_attn_layer_norm"),
        *_both(ours + "mlp.up", hf + "fc1"),
        *_both(ours + "mlp.down", hf + "fc2"),
        *_both(ours + "mlp_norm", hf + "final_layer_norm"),
    ]
    if cross:
        enc = hf + "encoder_attn."
        rules += [
            *_both(ours + "cross.q", enc + "q_proj"),
            fused_halves(ours + "cross.kv.weight", enc + "k_proj.weight", enc + "v_proj.weight"),
            fused_halves(ours + "cross.kv.bias", enc + "k_proj.bias", enc + "v_proj.bias"),
            *_both(ours + "cross.o", enc + "out_proj"),
            *_both(ours + "cross_norm", hf + "encoder_attn_layer_norm"),
        ]
    return rules


ADAPTERS = [Bart(
    "bart", "model.",
    # Old checkpoints store each stack's copy of the shared token table.
    ignored=("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"),
    top_level=("lm_head.", "final_logits_bias"),
)]
