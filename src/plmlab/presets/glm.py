"""GLM family: the original GLM (paper sizes), GLM-130B, ChatGLM-6B, ChatGLM2/3-6B, GLM-4-9B,
plus glm-tiny / glm-mini (original GLM architecture) and glm4-tiny for CPU.

Where the study notes differ from the code that shipped the checkpoints, the code wins:
- the GLM repository's layers are pre-LN (mpu/transformer.py: input_layernorm before attention,
  post_attention_layernorm before the MLP, final_layernorm), not post-LN; `glm-mini-post`
  is the post-LN variant the notes describe, for comparison runs.
- ChatGLM-6B's MLP is a plain 4096 -> 16384 -> 4096 GeLU (its `GLU` class applies `gelu`, not
  a gate); GeGLU is GLM-130B's. Its rotary positions are 2-D (position and block position
  each rotate half of every head) and its output is tied to the embeddings (6.2 B parameters).
"""

# Du et al. 2022 (GLM), section 2.2.1 and the GLM repository: pre-LN, tanh GeLU (`gelu_impl`),
# 2-D learned positions, a single output layer tied to the word embeddings, biases everywhere.
GLM = dict(
    arch="decoder", norm="layernorm", norm_eps=1e-5, norm_placement="pre", final_norm=True,
    position="learned-2d", activation="gelu_tanh", gated_mlp=False, qkv_bias=True, out_bias=True,
    mlp_bias=True, tie_embeddings=True, head="lm", scaled_residual_init=True, dropout=0.1,
    attn_dropout=0.1, tokenizer="glm",
)


def _glm(n_layers: int, d_model: int, n_heads: int, vocab: int, context: int, params: str, **extra) -> dict:
    notes = {"paper": "GLM (Du et al. 2022), THUDM/GLM README model table", "params": params}
    return {**GLM, "n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_ff": 4 * d_model,
            "vocab_size": vocab, "max_positions": context, "notes": notes, **extra}


# GLM-130B (Zeng et al. 2023, section 2.1): DeepNorm post-LN (alpha = sqrt(2N)), rotary
# positions (1-D, whole head, rotate-half), GeGLU; configs/model_glm_130b.sh for the sizes.
GLM130B = dict(
    arch="decoder", n_layers=70, d_model=12288, n_heads=96, d_ff=32768, vocab_size=150528,
    max_positions=2048, norm="layernorm", norm_eps=1e-5, norm_placement="deepnorm", final_norm=True,
    position="rotary", rope_theta=10000.0, activation="gelu", gated_mlp=True, qkv_bias=True,
    out_bias=True, mlp_bias=True, tie_embeddings=True, head="lm", scaled_residual_init=False,
    tokenizer="glm", notes={"paper": "GLM-130B (Zeng et al. 2023)", "params": "130B"},
)

# ChatGLM-6B (THUDM/chatglm-6b modeling_chatglm.py): GLM-130B's DeepNorm block at 28 x 4096,
# 2-D rotary, plain tanh-GeLU MLP of 16384, vocab 130528, context 2048.
CHATGLM6B = {**GLM130B, "n_layers": 28, "d_model": 4096, "n_heads": 32, "d_ff": 16384, "vocab_size": 130528,
             "position": "rotary-2d", "activation": "gelu_tanh", "gated_mlp": False,
             "notes": {"paper": "ChatGLM-6B (THUDM 2023)", "params": "6.2B"}}

# ChatGLM2/3-6B: LLaMA-like. RMSNorm, rotary on half of each head with interleaved pairs
# (apply_rotary_pos_emb reshapes to (..., d/4, 2)), SwiGLU, multi-query attention with 2 KV
# groups, bias on QKV only, untied output.
CHATGLM2 = dict(
    arch="decoder", n_layers=28, d_model=4096, n_heads=32, n_kv_heads=2, head_dim=128, d_ff=13696,
    vocab_size=65024, max_positions=32768, norm="rmsnorm", norm_eps=1e-5, norm_placement="pre",
    final_norm=True, position="rotary", rope_theta=10000.0, rotary_fraction=0.5, rotary_interleaved=True,
    activation="silu", gated_mlp=True, qkv_bias=True, out_bias=False, mlp_bias=False, tie_embeddings=False,
    head="lm", scaled_residual_init=False, eos_token_id=2, pad_token_id=0, tokenizer="glm",
    notes={"paper": "ChatGLM2-6B (THUDM 2023)", "params": "6.2B"},
)

# GLM-4-9B (HF GlmForCausalLM; glm-4-9b-chat config): 40 layers, vocab 151552, rope theta
# 10000 x rope_ratio 500, RMSNorm eps 1.5625e-7, context 128 K.
GLM4 = {**CHATGLM2, "n_layers": 40, "vocab_size": 151552, "max_positions": 131072, "norm_eps": 1.5625e-7,
        "rope_theta": 5_000_000.0, "eos_token_id": 151329, "pad_token_id": 151329,
        "notes": {"paper": "GLM-4 (GLM Team 2024), THUDM/glm-4-9b-chat", "params": "9.4B"}}

# GLM-4-9B-0414 (THUDM/GLM-4-9B-0414 config.json, transformers' Glm4ForCausalLM): GLM-4-9B's
# shape with Sandwich-LN (a second RMSNorm after attention and after the MLP), RMSNorm eps 1e-5,
# rope theta 10000, context 32 K.
GLM4_0414 = {**GLM4, "norm_placement": "sandwich", "norm_eps": 1e-5, "rope_theta": 10000.0, "max_positions": 32768,
             "notes": {"paper": "GLM-4-0414 (THUDM 2025), THUDM/GLM-4-9B-0414", "params": "9.4B"}}

# CPU sizes: the vocabulary is that of the glm-style tokenizer plmlab trains on the corpus
# (<|endoftext|> = eos = pad = 0).
CPU = dict(vocab_size=2048, max_positions=128, eos_token_id=0, pad_token_id=0, dropout=0.0, attn_dropout=0.0)

PRESETS = {
    # THUDM/GLM README: GLM-Base / Large use BERT's WordPiece (30592 rows with GLM's tokens),
    # GLM-RoBERTa RoBERTa's BPE, GLM-2B / 10B GPT-2's BPE (50304 rows).
    "glm-base": _glm(12, 768, 12, 30592, 512, "110M"),
    "glm-large": _glm(24, 1024, 16, 30592, 512, "335M"),
    "glm-roberta": _glm(24, 1024, 16, 50304, 512, "335M (README; 356M with the 50K vocabulary)"),
    "glm-410m": _glm(30, 1024, 16, 30592, 512, "410M"),
    "glm-515m": _glm(30, 1152, 18, 30592, 512, "515M"),
    "glm-2b": _glm(36, 2048, 32, 50304, 1024, "2B"),
    "glm-10b": _glm(48, 4096, 64, 50304, 1024, "10B"),
    "glm-130b": GLM130B,
    "chatglm-6b": CHATGLM6B,
    "chatglm2-6b": CHATGLM2,
    "chatglm3-6b": {**CHATGLM2, "max_positions": 8192, "notes": {"paper": "ChatGLM3-6B (THUDM 2023)", "params": "6.2B"}},
    # chatglm3-6b-32k: rope_ratio 50 stretches the base to 500000 for 32 K tokens.
    "chatglm3-6b-32k": {**CHATGLM2, "rope_theta": 500000.0,
                        "notes": {"paper": "ChatGLM3-6B-32K (THUDM 2023)", "params": "6.2B"}},
    "glm4-9b": GLM4,
    "glm-tiny": _glm(2, 64, 4, 2048, 128, "tiny", **{**CPU, "d_ff": 256}),
    "glm-mini": _glm(4, 256, 4, 8192, 256, "mini", **{**CPU, "vocab_size": 8192, "max_positions": 256}),
    "glm-mini-post": _glm(4, 256, 4, 8192, 256, "mini", norm_placement="post", final_norm=False,
                          **{**CPU, "vocab_size": 8192, "max_positions": 256}),
    "glm4-9b-0414": GLM4_0414,
    "glm4-0414-tiny": {**GLM4_0414, "n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "head_dim": None,
                       "d_ff": 172, **CPU, "notes": {"params": "tiny"}},
    "glm4-tiny": {**GLM4, "n_layers": 2, "d_model": 64, "n_heads": 4, "n_kv_heads": 2, "head_dim": 16, "d_ff": 172,
                  "rope_theta": 10000.0, "norm_eps": 1e-5, **CPU, "notes": {"params": "tiny"}},
}
