"""Checkpoints users bring: transformers' Glm4ForCausalLM (GLM-4-0414, Sandwich-LN),
MistralForCausalLM (sliding window) and Qwen2ForCausalLM (QKV bias, optional window), tiny and
random, fp32: logits both ways (1e-4) and greedy generation identical to transformers', with
and without plmlab's KV cache. Windows are shorter than the sequences, so they matter."""

import json

import pytest
import torch

import plmlab
from plmlab import PlmlabError, build_model

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    Glm4Config, Glm4ForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config, Qwen2ForCausalLM,
)
from test_glm_hf import V, inputs, logits  # noqa: E402  (2 x 13 ids, the second row left-padded by 4)

SHAPE = dict(vocab_size=V, hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.2, rms_norm_eps=1e-5,
             pad_token_id=0, eos_token_id=1, bos_token_id=1)


def randomised(model):
    with torch.no_grad():  # random norm weights too, so a swapped or missing norm cannot pass unnoticed
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model.eval()


CASES = {
    "glm4": lambda: Glm4ForCausalLM(Glm4Config(**SHAPE, head_dim=16)),
    "glm4-tied-quarter-rotary": lambda: Glm4ForCausalLM(Glm4Config(
        **SHAPE, head_dim=32, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 5e5, "partial_rotary_factor": 0.25})),
    "mistral-window-5": lambda: MistralForCausalLM(MistralConfig(**SHAPE, sliding_window=5)),
    "mistral-full": lambda: MistralForCausalLM(MistralConfig(**SHAPE, sliding_window=None)),
    "qwen2": lambda: Qwen2ForCausalLM(Qwen2Config(**SHAPE)),
    "qwen2-window-4-from-layer-1": lambda: Qwen2ForCausalLM(Qwen2Config(
        **SHAPE, use_sliding_window=True, sliding_window=4, max_window_layers=1)),
}
MODEL_TYPE = {"glm4": "glm4", "mistral": "mistral", "qwen2": "qwen2"}


def assert_same_generation(hf, ours, prompt, mask=None):
    n = 12
    ref = hf.generate(prompt, attention_mask=mask, max_new_tokens=n, do_sample=False, eos_token_id=None,
                      pad_token_id=0)[:, prompt.shape[1]:]
    for use_cache in (True, False):
        got = plmlab.generate(ours, prompt, attention_mask=mask, max_new_tokens=n, eos_token_id=None,
                              use_cache=use_cache)
        assert got.tolist() == ref.tolist(), use_cache


@pytest.mark.parametrize("name", CASES)
def test_load_then_save_back_with_logit_and_generation_parity(name, tmp_path):
    torch.manual_seed(0)
    hf = randomised(CASES[name]())
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    ids, mask, pos = inputs()
    ref, out = logits(hf, ids, mask, pos), logits(ours, ids, mask, pos)
    assert ref.abs().max() > 1e-2  # near-zero logits would prove nothing
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-4, rtol=1e-4)
    assert_same_generation(hf, ours, ids, mask)

    plmlab.save_pretrained(ours, tmp_path / "back")
    saved = json.loads((tmp_path / "back" / "config.json").read_text())
    assert saved["model_type"] == MODEL_TYPE[name.split("-")[0]]
    hf2 = type(hf).from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(logits(hf2, ids, mask, pos)[keep], ref[keep], atol=1e-4, rtol=1e-4)


def test_the_window_changes_the_logits(tmp_path):
    """The window cases above would pass vacuously if the window hid nothing at length 13."""
    torch.manual_seed(0)
    hf = randomised(CASES["mistral-window-5"]())
    hf.save_pretrained(tmp_path)
    ours = plmlab.load_pretrained(tmp_path)
    assert ours.config.sliding_window == 5
    full = build_model(ours.config.replace(sliding_window=None)).eval()
    full.load_state_dict(ours.state_dict())
    ids, mask, pos = inputs()
    assert not torch.allclose(logits(ours, ids, mask, pos)[:, 6:], logits(full, ids, mask, pos)[:, 6:], atol=1e-3)
    # the first 5 tokens of the unpadded row see no more than the window either way
    torch.testing.assert_close(logits(ours, ids, mask, pos)[0, :5], logits(full, ids, mask, pos)[0, :5])


@pytest.mark.parametrize("preset,cls", [("glm4-0414-tiny", Glm4ForCausalLM), ("mistral-tiny", MistralForCausalLM),
                                        ("qwen2-tiny", Qwen2ForCausalLM)])
def test_save_preset_then_load_in_transformers_and_generate(preset, cls, tmp_path):
    torch.manual_seed(0)
    ours = randomised(build_model(preset, vocab_size=V, init_std=0.2))
    plmlab.save_pretrained(ours, tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf) is cls
    ids, mask, pos = inputs()
    keep = mask.bool()
    torch.testing.assert_close(logits(hf, ids, mask, pos)[keep], logits(ours, ids, mask, pos)[keep],
                               atol=1e-4, rtol=1e-4)
    assert_same_generation(hf, ours, ids[:1])
    assert plmlab.load_pretrained(tmp_path).config == ours.config


def test_windowed_cache_keeps_only_the_window():
    """Mistral's rolling buffer: after any number of tokens a windowed layer holds window - 1 keys."""
    model = build_model("mistral-tiny").eval()
    W = model.config.sliding_window
    cache = model.new_cache(1, 64)
    with torch.no_grad():
        model(torch.randint(3, 100, (1, 20)), cache=cache)
        model(torch.randint(3, 100, (1, 1)), cache=cache)
    assert cache.length == 21 and all(k.shape[2] == W - 1 for k in cache.k)


def test_qwen2_layer_types_that_plmlab_cannot_map_are_refused(tmp_path):
    hf = Qwen2ForCausalLM(Qwen2Config(**SHAPE))
    hf.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg.update(use_sliding_window=True, sliding_window=4, max_window_layers=1,
               layer_types=["sliding_attention", "full_attention", "sliding_attention"])
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlmlabError, match="layer_types") as e:
        plmlab.load_pretrained(tmp_path)
    assert "\n" not in str(e.value)
