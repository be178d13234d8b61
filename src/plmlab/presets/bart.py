"""BART (Lewis et al. 2019) plus bart-tiny / bart-mini.

Section 2.1: the standard sequence-to-sequence Transformer with GELU, 6 + 6 layers for the
base model and 12 + 12 for the large one, each decoder layer adding cross-attention; from
fairseq / transformers' BartConfig: post-LN blocks with LayerNorm (eps 1e-5) and no final norm,
a LayerNorm on the summed embeddings of each stack (`layernorm_embedding`), learned positions
per stack whose ids start at row 2 (1024 + 2 rows), biases on every projection, the output tied
to the shared token table plus `final_logits_bias`, the GPT-2 byte-level BPE vocabulary of
RoBERTa (50265 ids: <s>=0 <pad>=1 </s>=2 <unk>=3, <mask> last) and the decoder starting from
</s> = 2. facebook/bart-base: d 768, 12 heads, FFN 3072; facebook/bart-large: d 1024, 16 heads,
FFN 4096; dropout 0.1 and attention dropout 0.1 in both.
"""

BART = dict(
    arch="encoder-decoder", vocab_size=50265, max_positions=1024, norm="layernorm", norm_eps=1e-5,
    norm_placement="post", final_norm=False, embedding_norm=True, per_stack_embeddings=True,
    scale_embedding=False, position="learned", position_offset=2, activation="gelu",
    qkv_bias=True, out_bias=True, mlp_bias=True, head="lm", tie_embeddings=True, lm_head_bias=True,
    dropout=0.1, attn_dropout=0.1, init_std=0.02, scaled_residual_init=False,
    pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2, tokenizer="bart",
)


def _bart(n_layers: int, d_model: int, n_heads: int, params: str, **extra) -> dict:
    """n_layers on each side; FFN 4 * d_model as both released checkpoints."""
    return {**BART, "n_layers": n_layers, "n_decoder_layers": n_layers, "d_model": d_model, "n_heads": n_heads,
            "d_ff": 4 * d_model, "notes": {"paper": "BART (Lewis et al. 2019)", "params": params}, **extra}


PRESETS = {
    "bart-base": _bart(6, 768, 12, "140M"),
    "bart-large": _bart(12, 1024, 16, "400M"),
    # CPU sizes: the vocabulary is that of the RoBERTa-style tokenizer plmlab trains on the corpus.
    "bart-tiny": _bart(2, 64, 4, "tiny", vocab_size=2048, max_positions=128, dropout=0.0, attn_dropout=0.0),
    "bart-mini": _bart(4, 256, 4, "mini", vocab_size=8192, max_positions=256),
}
