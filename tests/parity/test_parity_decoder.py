"""Decoder-only parity with `transformers`: tiny random models, fp32, load and save directions."""

import json

import pytest
import torch

import plmlab
from plmlab import PlmlabError

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, OpenAIGPTConfig, OpenAIGPTLMHeadModel,
)

V = 97


def gpt2():
    return GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                      initializer_range=0.2))


def gpt1():
    return OpenAIGPTLMHeadModel(OpenAIGPTConfig(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                initializer_range=0.2))


def llama(**kw):
    cfg = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=4, max_position_embeddings=64, initializer_range=0.2)
    return LlamaForCausalLM(LlamaConfig(**{**cfg, **kw}))


CASES = {
    "gpt2": gpt2,
    "openai-gpt": gpt1,
    "llama-mha": llama,
    "llama-gqa": lambda: llama(num_key_value_heads=2),
    "llama-mqa": lambda: llama(num_key_value_heads=1),
    "llama-bias-tied-theta": lambda: llama(attention_bias=True, mlp_bias=True, tie_word_embeddings=True,
                                           rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
    "llama-head-dim": lambda: llama(head_dim=12),
}


def _inputs():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (2, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding in the second row
    return ids, mask


@pytest.mark.parametrize("name", CASES)
def test_load_hf_then_save_back(name, tmp_path):
    torch.manual_seed(0)
    hf = CASES[name]().eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert not ours.training
    ids, mask = _inputs()
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = hf(ids, attention_mask=mask, position_ids=pos).logits
        out = ours(ids, attention_mask=mask, position_ids=pos).logits
    assert ref.abs().max() > 1e-2  # a test on near-zero logits would prove nothing
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-4, rtol=1e-4)

    plmlab.save_pretrained(ours, tmp_path / "back")
    hf2 = type(hf).from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        back = hf2(ids, attention_mask=mask, position_ids=pos).logits
    torch.testing.assert_close(back[keep], ref[keep], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny"])
def test_save_ours_then_load_in_transformers(preset, tmp_path):
    torch.manual_seed(0)
    ours = plmlab.build_model(preset, init_std=0.2).eval()
    plmlab.save_pretrained(ours, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == cfg["architectures"][0]
    ids = torch.randint(0, ours.config.vocab_size, (2, 9))
    with torch.no_grad():
        torch.testing.assert_close(ours(ids).logits, hf(ids).logits, atol=1e-4, rtol=1e-4)
    # and plmlab reads its own save back to the same Config
    assert plmlab.load_pretrained(tmp_path).config == ours.config


def test_round_trip_keeps_the_config(tmp_path):
    ours = plmlab.build_model("llama-tiny")
    plmlab.save_pretrained(ours, tmp_path)
    assert plmlab.load_pretrained(tmp_path).config == ours.config


def test_non_hf_architecture_uses_plmlab_format(tmp_path):
    """A post-LN LLaMA has no HF class: it is written in plmlab's own layout and read back."""
    ours = plmlab.build_model("llama-tiny", norm_placement="post").eval()
    plmlab.save_pretrained(ours, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "plmlab"
    back = plmlab.load_pretrained(tmp_path)
    ids = torch.randint(0, 100, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ours(ids).logits)
    with pytest.raises(PlmlabError, match="no Hugging Face architecture"):
        plmlab.save_pretrained(ours, tmp_path / "x", format="hf")


def test_sharded_checkpoint_loads(tmp_path, monkeypatch):
    import plmlab.hf as hfmod

    ours = plmlab.build_model("gpt-tiny").eval()
    monkeypatch.setattr(hfmod, "MAX_SHARD_BYTES", 200_000)
    plmlab.save_pretrained(ours, tmp_path)
    assert (tmp_path / "model.safetensors.index.json").exists()
    assert len(list(tmp_path.glob("model-*.safetensors"))) > 1
    back = plmlab.load_pretrained(tmp_path)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 100, (1, 6))
    with torch.no_grad():
        torch.testing.assert_close(back(ids).logits, ours(ids).logits)
        torch.testing.assert_close(hf(ids).logits, ours(ids).logits, atol=1e-4, rtol=1e-4)


def test_bad_checkpoints_give_one_line_errors(tmp_path):
    ours = plmlab.build_model("gpt-tiny")
    plmlab.save_pretrained(ours, tmp_path / "ok")
    with pytest.raises(PlmlabError, match="no such checkpoint"):
        plmlab.load_pretrained(tmp_path / "missing")
    # truncated weights
    trunc = tmp_path / "trunc"
    trunc.mkdir()
    (trunc / "config.json").write_bytes((tmp_path / "ok" / "config.json").read_bytes())
    data = (tmp_path / "ok" / "model.safetensors").read_bytes()
    (trunc / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(PlmlabError, match="corrupt or truncated"):
        plmlab.load_pretrained(trunc)
    # pickle only: refused without unpickling
    pkl = tmp_path / "pickle"
    pkl.mkdir()
    (pkl / "config.json").write_bytes((tmp_path / "ok" / "config.json").read_bytes())
    (pkl / "pytorch_model.bin").write_bytes(b"not even read")
    with pytest.raises(PlmlabError, match="safetensors only"):
        plmlab.load_pretrained(pkl)
    # a config that does not match the weights
    cfg = json.loads((tmp_path / "ok" / "config.json").read_text())
    cfg["n_embd"] = 32
    (tmp_path / "ok" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(PlmlabError, match="shape"):
        plmlab.load_pretrained(tmp_path / "ok")
    (tmp_path / "ok" / "config.json").write_text("{broken")
    with pytest.raises(PlmlabError, match="invalid JSON"):
        plmlab.load_pretrained(tmp_path / "ok")
