"""LLaMA 1/2/3 (paper sizes) plus llama-tiny / llama-mini.

Pre-norm RMSNorm, rotary positions (rotate-half layout), SwiGLU, no biases, untied output.
"""

LLAMA = dict(
    arch="decoder", vocab_size=32000, max_positions=2048, norm="rmsnorm", norm_eps=1e-6,
    norm_placement="pre", final_norm=True, position="rotary", rope_theta=10000.0,
    activation="silu", gated_mlp=True, qkv_bias=False, out_bias=False, mlp_bias=False,
    tie_embeddings=False, head="lm", scaled_residual_init=False, bos_token_id=1, eos_token_id=2,
    tokenizer="llama",
)


def _llama(n_layers: int, d_model: int, n_heads: int, d_ff: int, params: str, **extra) -> dict:
    return {**LLAMA, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": d_ff,
            "notes": {"params": params}, **extra}


LLAMA2 = dict(max_positions=4096, norm_eps=1e-5)
LLAMA3 = dict(max_positions=8192, norm_eps=1e-5, vocab_size=128256, rope_theta=500000.0, n_kv_heads=8,
              bos_token_id=128000, eos_token_id=128001)

PRESETS = {
    # Touvron et al. 2023a, Table 2.
    "llama-7b": _llama(32, 4096, 32, 11008, "6.7B"),
    "llama-13b": _llama(40, 5120, 40, 13824, "13.0B"),
    "llama-33b": _llama(60, 6656, 52, 17920, "32.5B"),
    "llama-65b": _llama(80, 8192, 64, 22016, "65.2B"),
    # Touvron et al. 2023b: context 4096, GQA with 8 KV heads in 70B.
    "llama2-7b": _llama(32, 4096, 32, 11008, "7B", **LLAMA2),
    "llama2-13b": _llama(40, 5120, 40, 13824, "13B", **LLAMA2),
    "llama2-70b": _llama(80, 8192, 64, 28672, "70B", n_kv_heads=8, **LLAMA2),
    # LLaMA-3 (Meta 2024): vocab 128256, GQA with 8 KV heads, rope theta 500000, context 8192.
    "llama3-8b": _llama(32, 4096, 32, 14336, "8B", **LLAMA3),
    "llama3-70b": _llama(80, 8192, 64, 28672, "70B", **LLAMA3),
    "llama-tiny": _llama(2, 64, 4, 172, "tiny", vocab_size=2048, max_positions=128, n_kv_heads=2,
                         bos_token_id=1, eos_token_id=2),
    "llama-mini": _llama(4, 256, 8, 688, "mini", vocab_size=8192, max_positions=256, n_kv_heads=4,
                         bos_token_id=1, eos_token_id=2),
}
