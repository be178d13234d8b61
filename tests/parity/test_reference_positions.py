"""Positions against the authors' published code (transcribed in tests/reference/): the
sinusoidal table (DistilBERT's `create_sinusoidal_embeddings`), GLM's learned 2-D positions
(THUDM/GLM `GPT2ParallelTransformer`) and ChatGLM-6B's 2-D rotary (modeling_chatglm.py
`SelfAttention` with `RotaryEmbedding` / `apply_rotary_pos_emb_index`)."""

import pytest
import torch
from reference import chatglm6b, glm, sinusoidal

from plmlab import Config, build_model
from plmlab.nn.embedding import Embeddings
from plmlab.nn.position import Rotary2D, SinusoidalPositions
from plmlab.presets import PRESETS


def glm_tiny(**kw) -> Config:
    base = dict(PRESETS["glm-tiny"])
    base.pop("notes")
    return Config(**{**base, **kw})


def glm_positions(lengths_a: list[int], total: int) -> torch.Tensor:
    """GLM's 2-D positions for one blank per row: Part A is 0..a-1 with its [MASK] last, Part B
    (the rest) sits at the [MASK]'s position with block positions 1, 2, ... (Du et al. 2.2.2)."""
    rows = []
    for a in lengths_a:
        pos = torch.cat((torch.arange(a), torch.full((total - a,), a - 1)))
        block = torch.cat((torch.zeros(a, dtype=torch.long), torch.arange(1, total - a + 1)))
        rows.append(torch.stack((pos, block)))
    return torch.stack(rows)  # (B, 2, T)


def part_a_mask(lengths_a: list[int], total: int) -> torch.Tensor:
    """(B, T, T) True = may attend: Part A sees all of Part A, Part B is causal (GLM section 2.1)."""
    causal = torch.ones(total, total).tril().bool()[None]
    return causal | (torch.arange(total)[None, None] < torch.tensor(lengths_a)[:, None, None])


# --- sinusoidal -------------------------------------------------------------------------------
@pytest.mark.parametrize("n_pos, dim", [(64, 16), (512, 768), (2048, 128), (100, 63)])
def test_sinusoidal_table_matches_distilbert(n_pos, dim):
    """plmlab's table is the paper's interleaved one (sin on even dims, cos on odd), equal to
    DistilBERT's float64 construction at every position, odd widths included. The reference
    builds its table one Python float at a time: long tables get a narrow width (the same angles
    up to position 2047, 64 frequencies over the same range), the widest is DistilBERT's own."""
    table = SinusoidalPositions(Config(max_positions=n_pos, d_model=dim, n_heads=1, position="sinusoidal"), dim)
    ref = sinusoidal.create_sinusoidal_embeddings(n_pos, dim, torch.empty(n_pos, dim))
    torch.testing.assert_close(table.table, ref, rtol=0, atol=1e-7)


def test_sinusoidal_table_matches_installed_transformers():
    distil = pytest.importorskip("transformers.models.distilbert.modeling_distilbert")
    table = SinusoidalPositions(Config(max_positions=300, d_model=48, n_heads=1, position="sinusoidal"), 48)
    ref = distil._create_sinusoidal_embeddings(300, 48, torch.empty(300, 48))
    torch.testing.assert_close(table.table, ref, rtol=0, atol=1e-7)


def test_sinusoidal_model_embeds_tokens_plus_table():
    model = build_model(Config(vocab_size=50, d_model=32, n_heads=4, d_ff=64, n_layers=1, max_positions=40,
                               position="sinusoidal")).eval()
    ids, pos = torch.randint(0, 50, (2, 9)), torch.tensor([[0, 1, 2, 3, 4, 5, 6, 7, 8], [3, 9, 17, 39, 0, 1, 2, 3, 4]])
    ref = sinusoidal.create_sinusoidal_embeddings(40, 32, torch.empty(40, 32))
    torch.testing.assert_close(model.embed(ids, pos), model.embed.tokens(ids) + ref[pos], rtol=0, atol=1e-6)


# --- GLM learned 2-D --------------------------------------------------------------------------
def test_learned_2d_positions_match_thudm_glm():
    """GPT2ParallelTransformer with block_position_encoding: word + position_embeddings(row 0)
    + block_position_embeddings(row 1); plmlab's Embeddings with the same tables."""
    torch.manual_seed(0)
    config = glm_tiny()
    ours = Embeddings(config).eval()
    for p in ours.parameters():
        torch.nn.init.normal_(p)
    ref = glm.GPT2ParallelTransformer(0, 64, 4, max_sequence_length=config.max_positions - 1).eval()
    ref.position_embeddings.weight.data.copy_(ours.positions.weight)
    ref.block_position_embeddings.weight.data.copy_(ours.positions.block_weight)
    ids, pos = torch.randint(0, 2048, (2, 12)), glm_positions([7, 3], 12)
    with torch.no_grad():
        # No layers: the published forward returns final_layernorm(words + positions + blocks).
        ref_out = ref(ours.tokens(ids), pos, torch.tensor([7, 3]))
        torch.testing.assert_close(ref.final_layernorm(ours(ids, pos)), ref_out)


# --- ChatGLM-6B rotary 2-D --------------------------------------------------------------------
def _chatglm_rotated_qk(attn: chatglm6b.SelfAttention, x: torch.Tensor, position_ids: torch.Tensor):
    """The published SelfAttention.forward up to the rotary step, on [s, b, h] input: returns
    the rotated query and key layers [s, b, np, hn] (the lines before attention_fn)."""
    mixed = attn.query_key_value(x).view(*x.shape[:2], attn.num_attention_heads, 3 * attn.hidden_size_per_attention_head)
    q, k, _ = attn.split_tensor_along_last_dim(mixed, 3)
    q1, q2 = q.chunk(2, dim=(q.ndim - 1))
    k1, k2 = k.chunk(2, dim=(k.ndim - 1))
    cos, sin = attn.rotary_emb(q1, seq_len=position_ids.max() + 1)
    pos, block = position_ids[:, 0, :].transpose(0, 1).contiguous(), position_ids[:, 1, :].transpose(0, 1).contiguous()
    q1, k1 = chatglm6b.apply_rotary_pos_emb_index(q1, k1, cos, sin, pos)
    q2, k2 = chatglm6b.apply_rotary_pos_emb_index(q2, k2, cos, sin, block)
    return torch.concat([q1, q2], dim=(q1.ndim - 1)), torch.concat([k1, k2], dim=(k1.ndim - 1))


@pytest.mark.parametrize("head_dim", [16, 32])
def test_rotary_2d_matches_chatglm6b(head_dim):
    """The head splits into halves; the first rotates by the position, the second by the block
    position, both with RotaryEmbedding(head_dim / 2) tables (rotate-half inside each half)."""
    torch.manual_seed(0)
    heads, d = 4, 4 * head_dim
    rot = Rotary2D(glm_tiny(position="rotary-2d", d_model=d, n_heads=heads))
    ref = chatglm6b.SelfAttention(d, heads, layer_id=0, position_encoding_2d=True)
    q = torch.randn(2, 11, heads, head_dim)  # [b, s, np, hn]
    k = torch.randn(2, 11, heads, head_dim)
    # feed q, k through the published path: a query_key_value that emits [q_h, k_h, v_h] per head
    x = torch.cat((q, k, torch.zeros_like(q)), dim=-1)  # (b, s, np, 3 hn)
    ref.query_key_value = torch.nn.Identity()
    pos = glm_positions([6, 2], 11)
    ref_q, ref_k = _chatglm_rotated_qk(ref, x.flatten(2).transpose(0, 1), pos)  # [s, b, np, hn]
    cos, sin = rot(pos)
    ours_q = rot.rotate(q.transpose(1, 2), cos, sin)  # (b, np, s, hn)
    ours_k = rot.rotate(k.transpose(1, 2), cos, sin)
    torch.testing.assert_close(ours_q, ref_q.permute(1, 2, 0, 3))
    torch.testing.assert_close(ours_k, ref_k.permute(1, 2, 0, 3))


def test_rotary_2d_one_row_positions_mean_block_zero():
    """plmlab accepts (B, T) positions for rotary-2d: the published code with block positions 0."""
    torch.manual_seed(0)
    rot = Rotary2D(glm_tiny(position="rotary-2d"))
    ref = chatglm6b.SelfAttention(64, 4, layer_id=0, position_encoding_2d=True)
    ref.query_key_value = torch.nn.Identity()
    q = torch.randn(1, 7, 4, 16)
    pos = torch.arange(7)[None]
    ref_q, _ = _chatglm_rotated_qk(ref, torch.cat((q, q, q), -1).flatten(2).transpose(0, 1),
                                   torch.stack((pos, torch.zeros_like(pos)), dim=1))
    cos, sin = rot(pos)
    torch.testing.assert_close(rot.rotate(q.transpose(1, 2), cos, sin), ref_q.permute(1, 2, 0, 3))


@pytest.mark.parametrize("position", ["rotary-2d", "rotary"])
def test_rotary_attention_layer_matches_chatglm6b(position):
    """A whole attention layer, weights copied into the published SelfAttention (whose fused QKV
    is laid out per head: [q_h k_h v_h] for each h). rotary-2d is position_encoding_2d=True;
    plain `rotary` is its False path (GLM-130B's 1-D rotary over the whole head), fed the first
    row of GLM's positions, as plmlab's Rotary reads it."""
    torch.manual_seed(0)
    model = build_model(glm_tiny(position=position, norm_placement="deepnorm")).eval()
    attn = model.decoder.layers[0].attn
    for p in attn.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    two_d = position == "rotary-2d"
    ref = chatglm6b.SelfAttention(64, 4, layer_id=0, position_encoding_2d=two_d).eval()
    load_chatglm_attention(ref, attn, heads=4)
    x, pos, mask = torch.randn(2, 10, 64), glm_positions([5, 8], 10), part_a_mask([5, 8], 10)
    with torch.no_grad():
        ours = attn(x, model.decoder._context(x, pos, mask, None, None, None), 0)
        # published: [s, b, h] input, mask True = masked
        ref_out, _ = ref(x.transpose(0, 1), pos if two_d else pos[:, 0], ~mask[:, None], layer_id=torch.tensor(0))
    torch.testing.assert_close(ours, ref_out.transpose(0, 1))


def load_chatglm_attention(ref: chatglm6b.SelfAttention, attn, heads: int) -> None:
    """plmlab's [Q; K; V] rows -> ChatGLM-6B's per-head [q_h; k_h; v_h] rows (its forward views
    the fused output as (np, 3 hn) and splits the last dim in three)."""
    hd = attn.head_dim
    per_head = lambda t: t.view(3, heads, hd, *t.shape[1:]).transpose(0, 1).reshape(t.shape)  # noqa: E731
    ref.query_key_value.weight.data.copy_(per_head(attn.qkv.weight))
    ref.query_key_value.bias.data.copy_(per_head(attn.qkv.bias))
    ref.dense.load_state_dict({"weight": attn.o.weight, "bias": attn.o.bias})

