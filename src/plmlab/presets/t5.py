"""T5 v1.0 and v1.1 (Raffel et al. 2020) plus t5-tiny / t5-mini.

Both versions: pre-norm RMSNorm (eps 1e-6, no mean, no bias), no linear biases, attention
scores not scaled by 1/sqrt(d) (folded into the initialisation, Mesh TensorFlow), relative
position buckets (32 buckets, max distance 128) computed once per stack, the decoder starts
from <pad> = 0, EOS = 1. Vocabulary 32128 rows for the 32100-token SentencePiece model
(32000 pieces + 100 sentinels, padded to a multiple of 128).

Dropout: v1.0 0.1 everywhere, attention probabilities included (transformers' T5Attention
applies `dropout_rate` to them too); v1.1 none in pretraining.

v1.0 (paper Table 14): ReLU FFN, input and output embeddings tied, the decoder output scaled
by d_model ** -0.5 before the tied projection. v1.1 (google-research/text-to-text-transfer-
transformer, released_checkpoints.md): gated-GELU FFN (tanh GELU, Shazeer 2020), untied output,
no dropout in pretraining, d_ff shrunk and heads changed so sizes stay comparable.
"""

T5 = dict(
    arch="encoder-decoder", vocab_size=32128, max_positions=512, norm="rmsnorm", norm_eps=1e-6,
    norm_placement="pre", final_norm=True, position="relative", relative_buckets=32,
    relative_max_distance=128, qkv_bias=False, out_bias=False, mlp_bias=False, attn_scale=1.0,
    head="lm", lm_head_bias=False, scaled_residual_init=False, dropout=0.1, attn_dropout=0.1,
    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0, tokenizer="t5",
)


def _v10(n_layers: int, d_model: int, n_heads: int, d_ff: int, params: str, head_dim: int = 64, **extra) -> dict:
    """v1.0: ReLU, tied embeddings with the d_model ** -0.5 output scaling."""
    return {**T5, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
            "head_dim": head_dim, "activation": "relu", "gated_mlp": False, "tie_embeddings": True,
            "output_scale": d_model ** -0.5, "notes": {"paper": "T5 (Raffel et al. 2020) v1.0", "params": params},
            **extra}


def _v11(n_layers: int, d_model: int, n_heads: int, d_ff: int, params: str, head_dim: int = 64, **extra) -> dict:
    """v1.1: gated GELU (tanh), untied output without scaling, no dropout in pretraining."""
    return {**T5, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
            "head_dim": head_dim, "activation": "gelu_tanh", "gated_mlp": True, "tie_embeddings": False,
            "output_scale": None, "dropout": 0.0, "attn_dropout": 0.0, "notes": {"paper": "T5 v1.1", "params": params}, **extra}


PRESETS = {
    # Raffel et al. 2020, section 3.7 / Table 14 (d_kv = 64 except 3B and 11B: 128).
    "t5-small": _v10(6, 512, 8, 2048, "60.5M"),
    "t5-base": _v10(12, 768, 12, 3072, "222.9M"),
    "t5-large": _v10(24, 1024, 16, 4096, "737.7M"),
    "t5-3b": _v10(24, 1024, 32, 16384, "2.85B", head_dim=128),
    "t5-11b": _v10(24, 1024, 128, 65536, "11.3B", head_dim=128),
    # T5 v1.1 checkpoints (released_checkpoints.md; HF google/t5-v1_1-*).
    "t5-v1.1-small": _v11(8, 512, 6, 1024, "77.0M"),
    "t5-v1.1-base": _v11(12, 768, 12, 2048, "247.6M"),
    "t5-v1.1-large": _v11(24, 1024, 16, 2816, "783.2M"),
    "t5-v1.1-xl": _v11(24, 2048, 32, 5120, "2.85B"),
    "t5-v1.1-xxl": _v11(24, 4096, 64, 10240, "11.1B"),
    # CPU sizes (v1.1 recipe); the vocabulary is that of the T5 tokenizer plmlab trains on the
    # corpus (sentinels included), the encoder length that of the span-corruption inputs.
    "t5-tiny": _v11(2, 64, 4, 128, "tiny", head_dim=16, vocab_size=2048, max_positions=128),
    "t5-mini": _v11(4, 256, 4, 512, "mini", vocab_size=8192, max_positions=256),
}
