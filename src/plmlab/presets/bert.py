"""The encoder-only family: BERT, RoBERTa and ALBERT (paper sizes) plus tiny / mini CPU sizes.

BERT (Devlin et al. 2019, section 3 and appendix A): learned absolute positions (512), two
token types, post-LN with LayerNorm eps 1e-12, exact (erf) GELU, tanh pooler on [CLS], MLM
head = dense + GELU + LayerNorm + decoder tied to the word embeddings with its own bias, NSP
head on the pooled output. The paper presets carry both pretraining heads (BertForPreTraining).

RoBERTa (Liu et al. 2019, section 4): the same network without NSP (no pooler, no pair head),
one token type, byte-level BPE (50265 ids, `<pad>` = 1) and positions offset by
padding_idx + 1 = 2 (514 position rows for 512 tokens).

ALBERT (Lan et al. 2020, section 3.1): factorised embeddings (V x E, then E -> H), one set of
layer weights applied n_layers times, tanh GELU ("gelu_new"), SOP head on the pooled output.
"""

BERT = dict(
    arch="encoder", vocab_size=30522, max_positions=512, norm="layernorm", norm_eps=1e-12,
    norm_placement="post", final_norm=False, embedding_norm=True, position="learned",
    activation="gelu", qkv_bias=True, out_bias=True, mlp_bias=True, type_vocab_size=2,
    head="mlm", tie_embeddings=True, lm_head_bias=True, pooler=True, pair_head=True,
    dropout=0.1, attn_dropout=0.1, init_std=0.02, scaled_residual_init=False,
    pad_token_id=0, tokenizer="bert",
)


def _bert(n_layers: int, d_model: int, n_heads: int, params: str, **extra) -> dict:
    return {**BERT, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": 4 * d_model,
            "notes": {"params": params}, **extra}


# RoBERTa: MLM only; <s>=0 <pad>=1 </s>=2 <unk>=3 (the fairseq dictionary order).
ROBERTA = dict(vocab_size=50265, position_offset=2, type_vocab_size=1, pooler=False, pair_head=False,
               norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2, tokenizer="roberta")

# ALBERT: E = 128, shared layers, tanh GELU, no dropout in pretraining (section 4.8 of the
# paper removes it); SentencePiece vocabulary of 30000 with <pad>=0 [CLS]=2 [SEP]=3.
ALBERT = dict(vocab_size=30000, embedding_dim=128, shared_layers=True, activation="gelu_tanh",
              dropout=0.0, attn_dropout=0.0, bos_token_id=2, eos_token_id=3, tokenizer="albert")


def _albert(n_layers: int, d_model: int, n_heads: int, d_ff: int, params: str, **extra) -> dict:
    return {**_bert(n_layers, d_model, n_heads, params), **ALBERT, "d_ff": d_ff, **extra}


# CPU sizes: the vocabulary is that of the tokenizer plmlab trains on the corpus.
TINY = dict(vocab_size=2048, max_positions=128)
MINI = dict(vocab_size=8192, max_positions=256)

PRESETS = {
    # Devlin et al. 2019, section 3: BASE (L=12, H=768, A=12) 110M, LARGE (L=24, H=1024, A=16) 340M.
    "bert-base": _bert(12, 768, 12, "110M"),
    "bert-large": _bert(24, 1024, 16, "340M"),
    # Liu et al. 2019: the BERT shapes with RoBERTa's vocabulary and positions.
    "roberta-base": _bert(12, 768, 12, "125M", **ROBERTA),
    "roberta-large": _bert(24, 1024, 16, "355M", **ROBERTA),
    # Lan et al. 2020, Table 1 (heads: H / 64, as the released configurations).
    "albert-base": _albert(12, 768, 12, 3072, "12M"),
    "albert-large": _albert(24, 1024, 16, 4096, "18M"),
    "albert-xlarge": _albert(24, 2048, 16, 8192, "60M"),
    # Table 1 says 235M; this shape (the released configuration) has 223M with the heads.
    "albert-xxlarge": _albert(12, 4096, 64, 16384, "235M (paper; 223M as released)"),
    # Tiny (< 1 M, tests and smoke runs) and mini (a few M: learns something on a CPU).
    "bert-tiny": _bert(2, 64, 4, "tiny", **TINY),
    "bert-mini": _bert(4, 256, 4, "mini", **MINI),
    "roberta-tiny": _bert(2, 64, 4, "tiny", **{**ROBERTA, **TINY}),
    "roberta-mini": _bert(4, 256, 4, "mini", **{**ROBERTA, **MINI}),
    "albert-tiny": _albert(2, 64, 4, 256, "tiny", embedding_dim=32, **TINY),
    "albert-mini": _albert(4, 256, 4, 1024, "mini", embedding_dim=64, **MINI),
}
