"""Sliding-window attention and Sandwich-LN without transformers: the window mask against a
brute-force rule, the cache against uncached decoding, config validation, preset sizes and
`plmlab info` for the checkpoints users bring (Mistral, Qwen2, GLM-4-0414)."""

import json

import pytest
import torch

import plmlab
from plmlab import PlmlabError, build_model, count_parameters
from plmlab.generation import generate
from plmlab.nn.attention import window_mask
from plmlab.presets import get_preset
from test_generation import run_cli  # `plmlab ...` in process (a subprocess adds only its start-up)

PUBLISHED = {  # Mistral 7B announcement / paper; Qwen2 model cards; GLM-4-9B-0414 model card
    "mistral-7b": 7.3e9, "qwen2-0.5b": 0.49e9, "qwen2-7b": 7.62e9, "glm4-9b-0414": 9.4e9,
}


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_sizes(name):
    n = count_parameters(get_preset(name))["params"]
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.03, (name, n)


@pytest.mark.parametrize("window,past,T,kept", [(3, 0, 5, 0), (4, 6, 1, 3), (4, 6, 3, 3), (2, 5, 2, 1)])
def test_window_mask_is_the_brute_force_rule_sliced_to_the_kept_keys(window, past, T, kept):
    Tk = past + T
    full = torch.ones(1, 1, T, Tk, dtype=torch.bool).tril(diagonal=past)  # causal
    got = window_mask(full, window, kept)
    assert got.shape == (1, 1, T, kept + T)
    for i in range(T):
        q = past + i
        for j in range(kept + T):
            k = past - kept + j
            assert bool(got[0, 0, i, j]) == (k <= q and q - k < window), (i, j)


@pytest.mark.parametrize("preset", ["mistral-tiny", "qwen2-tiny"])
def test_windowed_generation_equals_uncached_greedy_and_beam(preset):
    torch.manual_seed(0)
    overrides = {"sliding_window": 3, "full_attention_layers": 1} if preset == "qwen2-tiny" else {}
    model = build_model(preset, init_std=0.2, **overrides).eval()
    ids = torch.randint(3, 500, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0
    for kw in ({}, {"num_beams": 3}):
        cached = generate(model, ids, attention_mask=mask, max_new_tokens=9, eos_token_id=None, **kw)
        uncached = generate(model, ids, attention_mask=mask, max_new_tokens=9, eos_token_id=None,
                            use_cache=False, **kw)
        assert torch.equal(cached, uncached), kw


def test_sandwich_norms_exist_only_for_sandwich_and_change_the_output():
    torch.manual_seed(0)
    sandwich = build_model("glm4-0414-tiny").eval()
    names = {n for n, _ in sandwich.named_parameters()}
    assert "decoder.layers.0.attn_post_norm.weight" in names and "decoder.layers.1.mlp_post_norm.weight" in names
    pre = build_model("glm4-tiny")
    assert not any("post_norm" in n for n, _ in pre.named_parameters())
    ids = torch.randint(0, 2048, (1, 6))
    before = sandwich(ids).logits
    with torch.no_grad():
        sandwich.decoder.layers[0].mlp_post_norm.weight.mul_(2.0)
    assert not torch.allclose(before, sandwich(ids).logits)


@pytest.mark.parametrize("overrides,message", [
    ({"sliding_window": 0}, "sliding_window must be positive"),
    ({"sliding_window": 4, "arch": "encoder", "head": "mlm"}, "sliding_window needs arch=decoder"),
    ({"full_attention_layers": -1}, "full_attention_layers must be >= 0"),
    ({"norm_placement": "sandwiched"}, "norm_placement"),
])
def test_bad_window_and_placement_configs_are_one_line(overrides, message):
    with pytest.raises(PlmlabError, match=message) as e:
        get_preset("mistral-tiny").replace(**overrides)
    assert "\n" not in str(e.value)


def test_a_window_no_hf_layout_represents_is_saved_in_plmlab_format(tmp_path):
    """A windowed GLM-4 has no transformers class: never saved as one with the window dropped."""
    model = build_model("glm4-tiny", sliding_window=4)
    plmlab.save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "plmlab"
    with pytest.raises(PlmlabError, match="sliding window"):
        plmlab.save_pretrained(model, tmp_path / "hf", format="hf")


def test_info_shows_counts_for_the_presets_and_a_saved_checkpoint(tmp_path):
    model = build_model("qwen2-tiny")
    plmlab.save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "qwen2"
    for target, preset in ((str(tmp_path), "qwen2-tiny"), ("mistral-7b", "mistral-7b")):
        code, out, stderr = run_cli(["info", target, "--json"])
        assert code == 0, stderr
        assert json.loads(out)["params"] == count_parameters(get_preset(preset))["params"]
