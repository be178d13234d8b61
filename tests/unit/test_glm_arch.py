"""GLM family architectures as config data: presets and their sizes, DeepNorm as ChatGLM-6B writes
it, both rows of GLM's 2-D positions reaching the model. Parity with the published GLM / ChatGLM-6B
code itself (transcribed in tests/reference/) is in tests/parity/test_reference_*.py."""

import json
import math
import pytest
import torch

from plmlab import build_model, count_parameters
from plmlab.config import Config
from plmlab.presets import PRESETS, get_preset

# Headline sizes: THUDM/GLM README model table, GLM-130B paper, ChatGLM / GLM-4 model cards.
PUBLISHED = {"glm-base": 110e6, "glm-large": 335e6, "glm-410m": 410e6, "glm-515m": 515e6, "glm-2b": 2e9,
             "glm-10b": 10e9, "glm-130b": 130e9, "chatglm-6b": 6.2e9, "chatglm2-6b": 6.2e9, "chatglm3-6b": 6.2e9,
             "glm4-9b": 9.4e9,
             # the README lists GLM-RoBERTa at GLM-Large's 335M; its 50304-row vocabulary adds the rest
             "glm-roberta": 335e6 + (50304 - 30592) * 1024}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_sizes(name):
    n = count_parameters(get_preset(name))["params"]
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.05, (name, n)


@pytest.mark.parametrize("name", ["glm-tiny", "glm4-tiny", "glm-mini", "glm-mini-post"])
def test_cpu_sizes_build_and_run(name):
    config = get_preset(name)
    n = count_parameters(config)["params"]
    assert n < 1e6 if "tiny" in name else 1e6 < n < 20e6
    model = build_model(name).eval()
    with torch.no_grad():
        out = model(torch.randint(0, config.vocab_size, (1, 9)))
    assert out.logits.shape == (1, 9, config.vocab_size) and torch.isfinite(out.logits).all()


def test_architectures_are_config_data():
    glm = get_preset("glm-large")
    assert (glm.norm_placement, glm.position, glm.activation, glm.gated_mlp, glm.tie_embeddings) == (
        "pre", "learned-2d", "gelu_tanh", False, True)
    assert get_preset("glm-mini-post").norm_placement == "post"
    g130 = get_preset("glm-130b")
    assert (g130.norm_placement, g130.position, g130.gated_mlp, g130.activation) == ("deepnorm", "rotary", True, "gelu")
    c6 = get_preset("chatglm-6b")
    assert (c6.norm_placement, c6.position, c6.d_ff, c6.vocab_size) == ("deepnorm", "rotary-2d", 16384, 130528)
    c2 = get_preset("chatglm2-6b")
    assert (c2.norm, c2.kv_heads, c2.rotary_fraction, c2.rotary_interleaved, c2.max_positions) == (
        "rmsnorm", 2, 0.5, True, 32768)
    assert (c2.qkv_bias, c2.out_bias, c2.mlp_bias, c2.activation, c2.gated_mlp) == (True, False, False, "silu", True)
    g4 = get_preset("glm4-9b")
    assert (g4.vocab_size, g4.kv_heads, g4.rotary_fraction, g4.n_layers) == (151552, 2, 0.5, 40)


def test_info_lists_and_describes_glm_presets(capsys):
    from plmlab.cli import main
    from plmlab.presets import preset_names

    assert {"glm-large", "chatglm2-6b", "glm4-9b", "glm-tiny", "glm-mini"} <= set(preset_names())
    assert main(["info", "chatglm-6b", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["params"] == count_parameters(get_preset("chatglm-6b"))["params"]
    assert info["config"]["position"] == "rotary-2d"
    assert main(["info", "glm-large"]) == 0
    assert "positions learned-2d" in capsys.readouterr().out


def tiny(**kw) -> Config:
    base = dict(PRESETS["glm-tiny"])
    base.pop("notes")
    return Config(**{**base, **kw})


def test_deepnorm_block_is_chatglm6b_glmblock():
    """ChatGLM-6B GLMBlock.forward: y = LN1(x); h = a*y + attn(y); z = LN2(h); out = a*z + mlp(z)."""
    torch.manual_seed(0)
    model = build_model(tiny(norm_placement="deepnorm", position="rotary-2d", n_layers=3)).eval()
    block, alpha = model.decoder.layers[1], math.sqrt(2 * 3)
    x = torch.randn(2, 7, 64)
    ctx = model.decoder._context(x, None, None, None, None, None)
    with torch.no_grad():
        y = block.attn_norm(x)
        h = alpha * y + block.attn(y, ctx, 1)
        z = block.mlp_norm(h)
        torch.testing.assert_close(block(x, ctx, 1), alpha * z + block.mlp(z))


@pytest.mark.parametrize("position", ["learned-2d", "rotary-2d", "rotary"])
def test_two_position_rows_reach_the_model(position):
    """Both rows change the output of 2-D position kinds; 1-D rotary reads the first row only."""
    torch.manual_seed(0)
    model = build_model(tiny(position=position)).eval()
    ids = torch.randint(8, 2048, (1, 6))
    pos = torch.tensor([[[0, 1, 2, 3, 3, 3], [0, 0, 0, 1, 2, 3]]])
    moved = pos.clone()
    moved[0, 1, 3:] += 1
    with torch.no_grad():
        a, b = model(ids, position_ids=pos).logits, model(ids, position_ids=moved).logits
        flat = model(ids, position_ids=pos[:, 0]).logits
    if position == "rotary":
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a, flat)
    else:
        assert not torch.allclose(a[:, 3:], b[:, 3:])
        torch.testing.assert_close(a[:, :3], b[:, :3])  # causal: earlier tokens unaffected
