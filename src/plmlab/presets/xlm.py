"""XLM (Lample & Conneau 2019): BERT's post-LN encoder with language embeddings, plus CPU sizes.

Section 3.1 / figure 1: token + position + language embeddings, summed and normed; the same
Transformer serves CLM (causal mask), MLM and TLM (section 3.3: parallel sentences
concatenated, positions reset for the second sentence). The head is one linear layer tied to
the word embeddings, with a bias (transformers' `XLMPredLayer`); the FFN is 4 x d_model.

`xlm-mlm-en-2048` is the released English MLM model (transformers' XLMConfig defaults: 12
layers, 2048 wide, 16 heads, 30145 BPE codes, 512 positions, one language, so no language
embedding). The CPU sizes carry two language embeddings, for TLM on a pair file.
"""

XLM = dict(
    arch="encoder", norm="layernorm", norm_eps=1e-12, norm_placement="post", final_norm=False,
    embedding_norm=True, position="learned", activation="gelu", qkv_bias=True, out_bias=True, mlp_bias=True,
    type_vocab_size=0, head="lm", tie_embeddings=True, lm_head_bias=True, dropout=0.1, attn_dropout=0.1,
    init_std=0.02, scaled_residual_init=False, tokenizer="roberta",
)


def _xlm(n_layers: int, d_model: int, n_heads: int, params: str, **extra) -> dict:
    return {**XLM, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": 4 * d_model,
            "notes": {"params": params}, **extra}


PRESETS = {
    # huggingface.co/xlm-mlm-en-2048 (FacebookAI): pad 2, bos 0, eos 1 in its fastBPE vocabulary.
    "xlm-mlm-en-2048": _xlm(12, 2048, 16, "667M", vocab_size=30145, max_positions=512,
                            pad_token_id=2, bos_token_id=0, eos_token_id=1),
    "xlm-tiny": _xlm(2, 64, 4, "tiny", vocab_size=2048, max_positions=128, n_languages=2),
    "xlm-mini": _xlm(4, 256, 4, "mini", vocab_size=8192, max_positions=256, n_languages=2),
}
