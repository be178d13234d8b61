"""Whole GLM-family models against the authors' published code (transcribed in tests/reference/):
the original GLM (THUDM/GLM GLMModel: pre-LN, learned 2-D positions, tied output) and ChatGLM-6B
(modeling_chatglm.py GLMBlock stack: DeepNorm, 2-D rotary, GLM's Part A/B mask)."""

import torch
from reference import chatglm6b, glm
from test_reference_positions import glm_positions, glm_tiny, load_chatglm_attention, part_a_mask

from plmlab import build_model


def randomize_(model: torch.nn.Module, std: float = 0.3) -> None:
    """Random values in every parameter (biases and norms too), so that none is checked at 0 or 1."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(1.0 if p.dim() == 1 and p.shape[0] == model.config.d_model else 0.0, std)


def test_glm_model_matches_thudm_glm():
    config = glm_tiny()  # pre-LN, learned-2d, tanh GeLU, d_ff = 4 d, tied output: GLMModel
    ours = build_model(config).eval()
    randomize_(ours)
    ref = glm.GLMModel(config.n_layers, config.vocab_size, config.d_model, config.n_heads,
                       max_sequence_length=config.max_positions - 1).eval()
    ref.word_embeddings.weight.data.copy_(ours.embed.tokens.weight)
    t = ref.transformer
    t.position_embeddings.weight.data.copy_(ours.embed.positions.weight)
    t.block_position_embeddings.weight.data.copy_(ours.embed.positions.block_weight)
    for layer, block in zip(t.layers, ours.decoder.layers):
        layer.input_layernorm.load_state_dict(block.attn_norm.state_dict())
        layer.attention.query_key_value.load_state_dict(block.attn.qkv.state_dict())  # [Q; K; V] in both
        layer.attention.dense.load_state_dict(block.attn.o.state_dict())
        layer.post_attention_layernorm.load_state_dict(block.mlp_norm.state_dict())
        layer.mlp.dense_h_to_4h.load_state_dict(block.mlp.up.state_dict())
        layer.mlp.dense_4h_to_h.load_state_dict(block.mlp.down.state_dict())
    t.final_layernorm.load_state_dict(ours.decoder.norm.state_dict())

    lengths_a, T = [7, 4], 12
    ids, pos = torch.randint(0, config.vocab_size, (2, T)), glm_positions(lengths_a, T)
    with torch.no_grad():
        # the published model takes the Part A length ("sep") and builds its mask itself
        ref_logits, ref_hidden = ref(ids, pos, torch.tensor(lengths_a))
        out = ours(ids, attention_mask=part_a_mask(lengths_a, T), position_ids=pos)
    torch.testing.assert_close(out.last_hidden_state, ref_hidden)
    torch.testing.assert_close(out.logits, ref_logits)


def test_chatglm6b_model_matches_modeling_chatglm():
    """ChatGLM-6B's layout: GLMBlocks with DeepNorm on the embeddings' first norm, 2-D rotary,
    plain tanh-GeLU MLP, final LayerNorm; masks and 2-D positions as ChatGLMModel's get_masks /
    get_position_ids build them (Part B starts at bos)."""
    config = glm_tiny(position="rotary-2d", norm_placement="deepnorm", n_layers=3, scaled_residual_init=False)
    ours = build_model(config).eval()
    randomize_(ours)
    blocks = torch.nn.ModuleList(
        chatglm6b.GLMBlock(config.d_model, config.n_heads, config.norm_eps, layer_id=i,
                           inner_hidden_size=config.d_ff, num_layers=config.n_layers) for i in range(config.n_layers))
    for ref, block in zip(blocks.eval(), ours.decoder.layers):
        ref.input_layernorm.load_state_dict(block.attn_norm.state_dict())
        load_chatglm_attention(ref.attention, block.attn, config.n_heads)
        ref.post_attention_layernorm.load_state_dict(block.mlp_norm.state_dict())
        ref.mlp.dense_h_to_4h.load_state_dict(block.mlp.up.state_dict())
        ref.mlp.dense_4h_to_h.load_state_dict(block.mlp.down.state_dict())
    final = torch.nn.LayerNorm(config.d_model, eps=config.norm_eps)
    final.load_state_dict(ours.decoder.norm.state_dict())

    bos, mask_token = 5, 6  # two rows, each one blank: Part A ... [MASK] ... | bos Part B
    ids = torch.tensor([[11, 12, mask_token, 13, 14, bos, 21, 22, 23, 24],
                        [15, mask_token, 16, bos, 25, 26, 27, 28, 29, 30]])
    mask = chatglm6b.get_masks(ids, "cpu", bos_token_id=bos)  # (B, 1, T, T), True = masked
    pos = chatglm6b.get_position_ids(ids, [2, 1], "cpu", bos_token_id=bos)  # (B, 2, T)
    with torch.no_grad():
        ref_hidden = chatglm6b.chatglm_forward(ours.embed.tokens, blocks, final, ids, pos, mask)
        out = ours(ids, attention_mask=~mask[:, 0], position_ids=pos)
    torch.testing.assert_close(out.last_hidden_state, ref_hidden.transpose(0, 1))
    # ChatGLMForConditionalGeneration's lm_head holds the word embeddings (tied)
    torch.testing.assert_close(out.logits, ref_hidden.transpose(0, 1) @ ours.embed.tokens.weight.T)
