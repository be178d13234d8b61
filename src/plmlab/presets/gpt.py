"""GPT-1, GPT-2 and the GPT-3 family (paper sizes) plus gpt-tiny / gpt-mini."""

# GPT-2 (Radford et al. 2019): pre-LN + final LayerNorm, learned positions, tanh GELU, tied head.
GPT2 = dict(
    arch="decoder", vocab_size=50257, max_positions=1024, norm="layernorm", norm_eps=1e-5,
    norm_placement="pre", final_norm=True, position="learned", activation="gelu_tanh",
    qkv_bias=True, out_bias=True, mlp_bias=True, tie_embeddings=True, head="lm",
    scaled_residual_init=True, bos_token_id=50256, eos_token_id=50256, tokenizer="gpt2",
)


def _gpt2(n_layers: int, d_model: int, n_heads: int, **extra) -> dict:
    return {**GPT2, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": 4 * d_model, **extra}


# GPT-1 (Radford et al. 2018): post-LN, no final norm, exact GELU, 512 positions, vocab 40478.
GPT1 = _gpt2(
    12, 768, 12, vocab_size=40478, max_positions=512, norm_placement="post", final_norm=False,
    activation="gelu", scaled_residual_init=False, bos_token_id=None, eos_token_id=None,
    notes={"paper": "Improving Language Understanding by Generative Pre-Training", "params": "117M"},
)


def _gpt3(n_layers: int, d_model: int, n_heads: int, params: str) -> dict:
    # Brown et al. 2020, Table 2.1; context 2048, FFN 4 d. The paper alternates dense and
    # locally banded sparse attention; that changes no parameter, and plmlab runs dense.
    return _gpt2(n_layers, d_model, n_heads, max_positions=2048, notes={"paper": "GPT-3 Table 2.1", "params": params})


PRESETS = {
    "gpt1": GPT1,
    "gpt2": _gpt2(12, 768, 12, notes={"params": "124M"}),
    "gpt2-medium": _gpt2(24, 1024, 16, notes={"params": "355M"}),
    "gpt2-large": _gpt2(36, 1280, 20, notes={"params": "774M"}),
    "gpt2-xl": _gpt2(48, 1600, 25, notes={"params": "1.5B"}),
    "gpt3-125m": _gpt3(12, 768, 12, "125M"),
    "gpt3-350m": _gpt3(24, 1024, 16, "350M"),
    "gpt3-760m": _gpt3(24, 1536, 16, "760M"),
    # The table lists 24 heads of 128 for XL, which does not multiply to d_model = 2048;
    # 16 heads of 128 gives the headline 1.3 B.
    "gpt3-1.3b": _gpt3(24, 2048, 16, "1.3B"),
    "gpt3-2.7b": _gpt3(32, 2560, 32, "2.7B"),
    "gpt3-6.7b": _gpt3(32, 4096, 32, "6.7B"),
    # The table's d_model 5140 is a typo for 5120 = 40 heads x 128.
    "gpt3-13b": _gpt3(40, 5120, 40, "13B"),
    "gpt3-175b": _gpt3(96, 12288, 96, "175B"),
    # CPU sizes: the vocabulary is that of the tokenizer plmlab trains on the corpus.
    "gpt-tiny": _gpt2(2, 64, 4, vocab_size=2048, max_positions=128, bos_token_id=0, eos_token_id=0),
    "gpt-mini": _gpt2(4, 256, 4, vocab_size=8192, max_positions=256, bos_token_id=0, eos_token_id=0),
}
