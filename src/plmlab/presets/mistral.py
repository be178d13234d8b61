"""Mistral 7B and Qwen2 (0.5B, 7B): LLaMA's block with a sliding attention window (Mistral) or
a bias on Q, K and V (Qwen2), plus mistral-tiny / mistral-mini and qwen2-tiny / qwen2-mini
for CPU (windows smaller than their contexts, so the window matters in tests).
"""

from .llama import LLAMA

# Jiang et al. 2023 (Mistral 7B), table 1: dim 4096, 32 layers, head_dim 128, hidden 14336,
# 32 heads, 8 KV heads, window 4096, context 8192, vocab 32000; no biases, untied output.
MISTRAL = {**LLAMA, "n_layers": 32, "d_model": 4096, "n_heads": 32, "n_kv_heads": 8, "d_ff": 14336,
           "max_positions": 8192, "norm_eps": 1e-5, "sliding_window": 4096,
           "notes": {"paper": "Mistral 7B (Jiang et al. 2023), table 1", "params": "7.3B"}}

# Qwen2 technical report (Yang et al. 2024), table 1, and the released config.json files:
# GQA, SwiGLU, RMSNorm eps 1e-6, rope theta 1e6, bias on Q, K, V only, byte-level BPE with
# <|endoftext|> (151643) as bos and eos; 0.5B ties its output to the embeddings, 7B does not.
QWEN2 = {**LLAMA, "norm_eps": 1e-6, "rope_theta": 1_000_000.0, "qkv_bias": True, "out_bias": False,
         "vocab_size": 151936, "bos_token_id": 151643, "eos_token_id": 151643, "tokenizer": "gpt2"}


def _qwen2(n_layers: int, d_model: int, n_heads: int, n_kv_heads: int, d_ff: int, params: str, **extra) -> dict:
    return {**QWEN2, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "n_kv_heads": n_kv_heads,
            "d_ff": d_ff, "notes": {"paper": "Qwen2 technical report (Yang et al. 2024), table 1", "params": params},
            **extra}


# the CPU sizes use the corpus-trained tokenizers (llama style: <s> = 1, </s> = 2; gpt2 style:
# <|endoftext|> = 0)
CPU = dict(vocab_size=2048, max_positions=128)

PRESETS = {
    "mistral-7b": MISTRAL,
    "mistral-tiny": {**MISTRAL, **CPU, "n_kv_heads": 2, "n_layers": 2, "d_model": 64, "n_heads": 4, "d_ff": 172,
                     "sliding_window": 8, "notes": {"params": "tiny"}},
    "mistral-mini": {**MISTRAL, **CPU, "n_layers": 4, "d_model": 256, "n_heads": 8, "n_kv_heads": 4, "d_ff": 688,
                     "vocab_size": 8192, "max_positions": 256, "sliding_window": 64, "notes": {"params": "mini"}},
    "qwen2-0.5b": _qwen2(24, 896, 14, 2, 4864, "0.49B", max_positions=32768, tie_embeddings=True),
    "qwen2-7b": _qwen2(28, 3584, 28, 4, 18944, "7.62B", max_positions=131072, vocab_size=152064),
    "qwen2-tiny": _qwen2(2, 64, 4, 2, 172, "tiny", **CPU, tie_embeddings=True, bos_token_id=0, eos_token_id=0),
    "qwen2-mini": _qwen2(4, 256, 8, 4, 688, "mini", vocab_size=8192, max_positions=256,
                         bos_token_id=0, eos_token_id=0),
}
