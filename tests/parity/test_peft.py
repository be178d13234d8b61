"""LoRA adapters in PEFT's format, with `peft` as the oracle: tiny random GPT-2 and LLaMA, fp32."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.hf.peft import load_adapter, save_adapter
from plmlab.nn.lora import lora_layers
from plmlab.train.lora import LoraOptions, apply_lora

transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM  # noqa: E402

V = 97
CASES = {
    "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64)),
    "llama": lambda: LlamaForCausalLM(LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=48,
                                                  num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                                  max_position_embeddings=64)),
}
# what PEFT users target: GPT-2's Conv1D names; LLaMA's q and v only (k gets no adapter) and the MLP
PEFT_TARGETS = {"gpt2": ["c_attn", "c_proj", "c_fc"], "llama": ["q_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]}
EXPECTED_KEY = {"gpt2": "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
                "llama": "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"}


@pytest.fixture(params=list(CASES))
def base(request, tmp_path):
    torch.manual_seed(0)
    CASES[request.param]().eval().save_pretrained(tmp_path / "base")
    return request.param, tmp_path / "base"


def ids() -> torch.Tensor:
    return torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(1))


def hf_model(name, path):
    return {"gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[name].from_pretrained(path).eval()


def adapted(path, seed=2):
    """plmlab's model of `path` with rank-4 adapters whose B is no longer zero."""
    ours = plmlab.load_pretrained(path)
    apply_lora(ours, LoraOptions(r=4, alpha=8))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(ours).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)
    return ours.eval()


def test_peft_loads_plmlab_adapter_with_equal_logits(base, tmp_path):
    name, path = base
    ours = adapted(path)
    save_adapter(ours, tmp_path / "adapter")
    tensors = load_file(tmp_path / "adapter/adapter_model.safetensors")
    assert EXPECTED_KEY[name] in tensors
    if name == "llama":  # the fused QKV adapter split by rows, one A shared by q, k and v
        a = [tensors[EXPECTED_KEY[name].replace("q_proj", p)] for p in ("q_proj", "k_proj", "v_proj")]
        assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])
    settings = json.loads((tmp_path / "adapter/adapter_config.json").read_text())
    assert (settings["r"], settings["lora_alpha"], settings["fan_in_fan_out"]) == (4, 8.0, name == "gpt2")
    theirs = peft.PeftModel.from_pretrained(hf_model(name, path), tmp_path / "adapter").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids()).logits, ours(input_ids=ids()).logits, atol=1e-4, rtol=1e-4)
        back = plmlab.load_pretrained(path)
        load_adapter(back, tmp_path / "adapter")
        assert {layer.r for layer in lora_layers(back).values()} == {4}  # shared A: fused back at rank r
        torch.testing.assert_close(back(input_ids=ids()).logits, ours(input_ids=ids()).logits)


def test_plmlab_loads_peft_made_adapter(base, tmp_path):
    name, path = base
    torch.manual_seed(3)
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=PEFT_TARGETS[name], init_lora_weights=False,
                             rank_pattern={"v_proj": 2} if name == "llama" else {})
    theirs = peft.get_peft_model(hf_model(name, path), config).eval()
    theirs.save_pretrained(tmp_path / "adapter")
    ours = plmlab.load_pretrained(path)
    load_adapter(ours, tmp_path / "adapter")
    if name == "llama":  # own A per projection: rank-stacked, q (4) + k (none) + v (2)
        assert lora_layers(ours)["decoder.layers.0.attn.qkv"].r == 6
    with torch.no_grad():
        torch.testing.assert_close(ours(input_ids=ids()).logits, theirs(input_ids=ids()).logits, atol=1e-4, rtol=1e-4)


def test_merge_lora_equals_unmerged_and_loads_in_transformers(base, tmp_path):
    name, path = base
    ours = adapted(path)
    save_adapter(ours, tmp_path / "adapter")
    argv = ["merge-lora", "--model", str(path), "--adapter", str(tmp_path / "adapter"), "--out", str(tmp_path / "m")]
    assert main(argv) == 0
    merged = plmlab.load_pretrained(tmp_path / "m")
    with torch.no_grad():
        expected = ours(input_ids=ids()).logits
        torch.testing.assert_close(merged(input_ids=ids()).logits, expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hf_model(name, tmp_path / "m")(input_ids=ids()).logits, expected,
                                   atol=1e-4, rtol=1e-4)


def test_an_adapter_for_another_base_model_is_one_line(tmp_path, capsys):
    torch.manual_seed(0)
    for name in CASES:
        CASES[name]().save_pretrained(tmp_path / name)
    GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=48, n_layer=2, n_head=4, n_positions=64)).save_pretrained(
        tmp_path / "wide")
    save_adapter(adapted(tmp_path / "llama"), tmp_path / "llama-adapter")
    save_adapter(adapted(tmp_path / "gpt2"), tmp_path / "gpt2-adapter")
    with pytest.raises(PlmlabError, match="different base model"):
        load_adapter(plmlab.load_pretrained(tmp_path / "gpt2"), tmp_path / "llama-adapter")  # names
    with pytest.raises(PlmlabError, match="different base model"):
        load_adapter(plmlab.load_pretrained(tmp_path / "wide"), tmp_path / "gpt2-adapter")  # shapes
    argv = ["merge-lora", "--model", str(tmp_path / "wide"), "--adapter", str(tmp_path / "gpt2-adapter"),
            "--out", str(tmp_path / "m")]
    capsys.readouterr()  # transformers' progress bars from saving the bases
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("plmlab: error: ") and "different base model" in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()  # nothing written
    assert main(["merge-lora", "--model", str(tmp_path / "gpt2"), "--adapter", str(tmp_path / "gpt2"),
                 "--out", str(tmp_path / "m")]) == 2  # a model directory is not an adapter
    assert main(["merge-lora", "--model", str(tmp_path / "gpt2"), "--adapter", str(tmp_path / "gpt2-adapter"),
                 "--out", str(tmp_path / "gpt2")]) == 2  # never over the base model
    assert "would overwrite" in capsys.readouterr().err


def test_t5_adapter_with_fused_cross_attention_loads_in_peft(tmp_path):
    """T5: the fused QKV and the fused cross-attention K/V both split exactly into PEFT's q/k/v."""
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(0)
    config = T5Config(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0)
    T5ForConditionalGeneration(config).eval().save_pretrained(tmp_path / "base")
    ours = adapted(tmp_path / "base")
    save_adapter(ours, tmp_path / "adapter")
    assert json.loads((tmp_path / "adapter/adapter_config.json").read_text())["task_type"] == "SEQ_2_SEQ_LM"
    theirs = peft.PeftModel.from_pretrained(T5ForConditionalGeneration.from_pretrained(tmp_path / "base"),
                                            tmp_path / "adapter").eval()
    x, y = ids(), ids()[:, :5]
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=x, decoder_input_ids=y).logits,
                                   ours(input_ids=x, decoder_input_ids=y).logits, atol=1e-4, rtol=1e-4)


def test_auto_peft_model_loads_a_plmlab_adapter_by_itself(tmp_path, monkeypatch):
    """`base_model_name_or_path` is the run directory's final/ (where transformers finds config.json)
    as an absolute path: AutoPeftModelForCausalLM needs nothing else, from another working directory
    and after the adapter has moved."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a local path: PEFT must not ask the Hub about it
    run = tmp_path / "runs" / "llama"
    torch.manual_seed(0)
    CASES["llama"]().eval().save_pretrained(run / "final")  # a training run: its model in final/
    ours = adapted(run)
    monkeypatch.chdir(tmp_path)
    save_adapter(ours, tmp_path / "adapter", base_model="runs/llama")  # as `finetune --model runs/llama` passes it
    settings = json.loads((tmp_path / "adapter/adapter_config.json").read_text())
    assert settings["base_model_name_or_path"] == str((run / "final").resolve())
    (tmp_path / "adapter").rename(tmp_path / "moved")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    theirs = peft.AutoPeftModelForCausalLM.from_pretrained(tmp_path / "moved").eval()
    with torch.no_grad():
        torch.testing.assert_close(theirs(input_ids=ids()).logits, ours(input_ids=ids()).logits, atol=1e-4, rtol=1e-4)
