"""LoRA on plmlab models: zero B changes nothing, merge equals unmerged, only adapters train."""

from __future__ import annotations

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.nn.lora import LoRALinear, lora_layers, merge_into_base
from plmlab.train.lora import LoraOptions, apply_lora, describe_lora, lora_disabled, target_modules
from plmlab.train.optim import make_optimizer


def model(preset: str, seed: int = 0):
    torch.manual_seed(seed)
    return plmlab.build_model(preset, dropout=0.0, attn_dropout=0.0).eval()


def ids(vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(1))


def randomise_b(m) -> None:
    """Trained-looking adapters: B away from its zero init."""
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in lora_layers(m).values():
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g) * 0.3)


@pytest.mark.parametrize("preset", ["gpt-tiny", "llama-tiny", "bert-tiny", "t5-tiny", "glm-tiny"])
def test_zero_b_leaves_logits_unchanged_and_merge_equals_unmerged(preset):
    m = model(preset)
    x = {"input_ids": ids(m.config.vocab_size)}
    if m.config.arch == "encoder-decoder":
        x["decoder_input_ids"] = ids(m.config.vocab_size)[:, :5]
    with torch.no_grad():
        base = m(**x).logits
        names = apply_lora(m, LoraOptions(r=4, alpha=8))
        assert names and torch.equal(m(**x).logits, base)  # B = 0: exactly the base model
        randomise_b(m)
        adapted = m(**x).logits
        assert (adapted - base).abs().max() > 1e-3  # the adapters do something
        with lora_disabled(m):
            assert torch.equal(m(**x).logits, base)  # adapters off: the frozen reference
        assert torch.equal(m(**x).logits, adapted)  # and back on afterwards
        merge_into_base(m)
        assert not lora_layers(m)
        torch.testing.assert_close(m(**x).logits, adapted, atol=1e-5, rtol=1e-5)


def test_unmerge_restores_the_weight_and_kaiming_a_zero_b():
    torch.manual_seed(0)
    base = torch.nn.Linear(6, 5)
    w = base.weight.detach().clone()
    layer = LoRALinear(base, r=3, alpha=6)
    assert layer.weight is base.weight and layer.scaling == 2.0
    assert torch.count_nonzero(layer.lora_B) == 0 and layer.lora_A.abs().max() <= 1 / 6 ** 0.5  # kaiming bound
    layer.lora_B.data.normal_()
    x = torch.randn(4, 6)
    y = layer(x)
    layer.merge()
    torch.testing.assert_close(layer(x), y)
    torch.testing.assert_close(layer.weight.detach(), w + 2.0 * layer.lora_B.detach() @ layer.lora_A.detach())
    layer.unmerge()
    torch.testing.assert_close(layer.weight.detach(), w)


def test_targets_map_to_fused_projections():
    llama = model("llama-tiny")
    attn = target_modules(llama, LoraOptions(targets="attention"))
    mlp = target_modules(llama, LoraOptions(targets="mlp"))
    assert {n.split(".", 3)[-1] for n in attn} == {"attn.qkv", "attn.o"}  # the fused QKV, the output
    assert {n.split(".", 3)[-1] for n in mlp} == {"mlp.gate_up", "mlp.down"}  # the fused gate/up
    assert target_modules(llama, LoraOptions(targets="layers.0.mlp.down")) == ["decoder.layers.0.mlp.down"]
    t5 = target_modules(model("t5-tiny"), LoraOptions(targets="attention"))
    assert any(n.endswith("cross.kv") for n in t5) and any(n.endswith("cross.q") for n in t5)
    with pytest.raises(PlmlabError, match="matches no linear layer"):
        target_modules(llama, LoraOptions(targets="attention.nope"))


def test_only_adapters_train_and_the_optimizer_holds_their_state_only():
    m = model("gpt-tiny").train()
    apply_lora(m, LoraOptions(r=2, targets="attention"))
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_A", ".lora_B")) for n in trainable)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    opt = make_optimizer(m, 1e-2, 0.0)
    for _ in range(2):
        x = ids(m.config.vocab_size)
        loss = torch.nn.functional.cross_entropy(m(input_ids=x).logits.flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad()
    held = {id(p) for p in opt.state}
    assert held == {id(p) for p in m.parameters() if p.requires_grad}  # state for adapters only
    for n, p in m.named_parameters():
        assert torch.equal(p, before[n]) != (n in trainable), n  # frozen weights never move


def test_the_run_line_counts_adapters_and_the_new_head_as_peft_prints_them():
    """gpt-tiny's attention under rank 2: per layer QKV (fused: one A (r, d), B (3d, r)) and the output
    projection (A (r, d), B (d, r)); the total counts the tied embeddings once, as PEFT does."""
    m = model("gpt-tiny")
    base = sum(p.numel() for p in m.parameters())
    c = m.config
    head = [n for n, _ in m.named_parameters() if n.startswith("decoder.norm")]  # kept trainable, as a new head would be
    apply_lora(m, LoraOptions(r=2, targets="attention"), train_also=tuple(head))
    lora = c.n_layers * (2 * c.d_model + 3 * c.d_model * 2 + 2 * c.d_model + c.d_model * 2)
    extra = sum(p.numel() for n, p in m.named_parameters() if n in head)
    trainable, total = lora + extra, base + lora
    line = describe_lora(m)
    assert line.startswith(f"LoRA: {trainable:,} trainable parameters of {total:,} "
                           f"({100 * trainable / total:.2f} %), rank-2 adapters on attn.qkv, attn.o "
                           f"({2 * c.n_layers} modules); also trained: decoder.norm"), line
    assert trainable == sum(p.numel() for p in m.parameters() if p.requires_grad)


def test_bad_options_are_one_line():
    for kw, message in [({"r": 0}, "--lora-r"), ({"alpha": -1.0}, "--lora-alpha"), ({"dropout": 1.0}, "--lora-dropout"),
                        ({"targets": " , "}, "--lora-targets")]:
        with pytest.raises(PlmlabError, match=message):
            LoraOptions(**kw)


def test_saving_a_model_with_unmerged_adapters_in_hf_layout_is_refused(tmp_path):
    from plmlab.train.lora import LoraOptions, apply_lora

    model = plmlab.build_model("gpt-tiny")
    apply_lora(model, LoraOptions(r=2))
    with pytest.raises(plmlab.PlmlabError, match="carries LoRA adapters"):
        plmlab.save_pretrained(model, tmp_path / "out")
