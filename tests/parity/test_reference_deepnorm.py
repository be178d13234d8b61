"""DeepNorm's initialisation (beta), as GLM-130B (Zeng et al. 2023, section 2.1) states it:
"DeepNorm(x) = LayerNorm(alpha x + Network(x)), where alpha = (2N)^(1/2), and apply the Xavier
normal initialization with the scaling factor of (2N)^(-1/2) to ffn, v_proj and out_proj.
Additionally, all bias terms are initialized to zero." DeepNet (Wang et al. 2022, section 3)
and its code (microsoft/torchscale, torchscale/architecture/decoder.py, `Decoder.__init__`)
scale exactly those weights, by dividing the base init of every parameter whose name holds
fc1 / fc2 / out_proj / v_proj. plmlab fuses Q, K and V, so only the V rows of `qkv` get it.
The residual rule itself is checked against ChatGLM-6B's GLMBlock in test_reference_glm.py."""

import pytest
import torch

from plmlab import build_model
from plmlab.config import Config
from plmlab.presets import PRESETS


def preset(name: str, **kw) -> Config:
    base = {k: v for k, v in PRESETS[name].items() if k != "notes"}
    return Config(**{**base, **kw})


def glm130b_beta(n_layers: int) -> float:
    return (2 * n_layers) ** -0.5  # GLM-130B section 2.1, written out here on purpose


def beta_rows(name: str, c: Config) -> slice | None:
    """The rows of parameter `name` that DeepNet's init scales (None: it scales none)."""
    if name.endswith("attn.qkv.weight"):  # rows [Q; K; V]: V is last
        return slice((c.n_heads + c.kv_heads) * c.dim_head, None)
    if name.endswith("cross.kv.weight"):  # rows [K; V]
        return slice(c.n_heads * c.dim_head, None)
    if name.endswith(("attn.o.weight", "cross.o.weight", "mlp.up.weight", "mlp.gate_up.weight", "mlp.down.weight")):
        return slice(None)
    return None


TWINS = {
    # ChatGLM-6B's block (plain GeLU MLP, 2-D rotary) and GLM-130B's (GeGLU, 1-D rotary)
    "chatglm6b": preset("glm-tiny", position="rotary-2d", n_layers=3),
    "glm130b": preset("glm-tiny", position="rotary", gated_mlp=True, activation="gelu", n_layers=4),
    "gqa": preset("glm4-tiny", n_layers=3),  # value rows of a grouped-query QKV
    "cross-attention": preset("t5-tiny"),  # decoder blocks: cross-attention V and output too
    "shared-layers": preset("bert-tiny", shared_layers=True, n_layers=3),  # ALBERT: scaled once
}


@pytest.mark.parametrize("name", TWINS)
def test_beta_scales_exactly_ffn_value_and_output_weights(name):
    """Build the same config twice from the same seed, post-LN and DeepNorm: the random draws
    are identical, so every DeepNorm weight is beta times its twin on exactly the rows above
    and equal everywhere else (embeddings, Q and K, norms, biases, heads)."""
    base = TWINS[name].replace(scaled_residual_init=False)
    torch.manual_seed(0)
    post = dict(build_model(base.replace(norm_placement="post")).named_parameters())
    torch.manual_seed(0)
    deep = build_model(base.replace(norm_placement="deepnorm"))
    beta, n_scaled = glm130b_beta(base.n_layers), 0
    for pname, p in deep.named_parameters():
        expected = post[pname].detach().clone()
        rows = beta_rows(pname, base)
        if rows is not None:
            expected[rows] *= beta
            n_scaled += 1
        assert torch.equal(p.detach(), expected), pname
    # per block: V rows, output, the two FFN matrices; plus cross V and output in T5's decoder
    cross = base.decoder_layers if base.arch == "encoder-decoder" else 0
    n_blocks = 1 if base.shared_layers else base.n_layers + cross
    assert n_scaled == 4 * n_blocks + 2 * cross


def test_beta_replaces_gpt2_residual_scaling():
    """With DeepNorm, GPT-2's 1/sqrt(2N) on attn.o / mlp.down does not compound with beta."""
    c = TWINS["chatglm6b"]
    torch.manual_seed(0)
    plain = build_model(c.replace(norm_placement="deepnorm", scaled_residual_init=False))
    torch.manual_seed(0)
    flagged = build_model(c.replace(norm_placement="deepnorm", scaled_residual_init=True))
    for (name, a), (_, b) in zip(plain.named_parameters(), flagged.named_parameters()):
        assert torch.equal(a, b), name


def test_beta_std_of_scaled_and_unscaled_weights():
    """The statistics a user sees: N(0, beta * init_std) on v / out / ffn, N(0, init_std) on q, k."""
    torch.manual_seed(0)
    c = preset("glm-tiny", position="rotary-2d", norm_placement="deepnorm", n_layers=8, d_model=128, d_ff=512,
               scaled_residual_init=False)
    model = build_model(c)
    beta, std, d = glm130b_beta(8), c.init_std, c.d_model
    for block in model.decoder.layers:
        qk, v = block.attn.qkv.weight[: 2 * d], block.attn.qkv.weight[2 * d:]
        assert abs(qk.std().item() / std - 1) < 0.03
        for w in (v, block.attn.o.weight, block.mlp.up.weight, block.mlp.down.weight):
            assert abs(w.std().item() / (beta * std) - 1) < 0.05
        assert not block.attn.qkv.bias.any() and not block.mlp.up.bias.any()

