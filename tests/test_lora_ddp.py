"""LoRA under DDP: `plmlab sft --lora-r 4` on 2 gloo ranks trains the same adapter as one process
with the same global batch, and OUT/adapter is in PEFT's format (peft reads its config; the keys
are PEFT's). Fine-tuning runs are DDP under torchrun (FinetuneOptions has no --strategy), so
FSDP2 + LoRA does not arise."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import plmlab
from plmlab.tokenizers import train_tokenizer
from plmlab.train.lora import LoraOptions
from test_finetune_accum import CONVS, TEXTS, cli_args, run, torchrun  # the accumulation tests' data and runs

LORA = dict(lora_r=4, lora_targets="attention,mlp")


def test_two_ranks_train_the_adapter_one_process_trains(tmp_path):
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", dropout=0.0, attn_dropout=0.0), tmp_path / "model",
                           tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    (tmp_path / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONVS))
    run(tmp_path, tmp_path / "one", batch_size=8, lr=3e-3, lora=LoraOptions(r=4, targets="attention,mlp"))
    done = torchrun(cli_args(tmp_path, tmp_path / "two", batch_size=4, lr=3e-3, **LORA))  # 2 ranks x 4 = 8
    assert done.returncode == 0, done.stderr[-3000:]

    one, two = (load_file(tmp_path / run_ / "adapter" / "adapter_model.safetensors") for run_ in ("one", "two"))
    assert one.keys() == two.keys() and any(".lora_A." in k for k in one)
    assert all(k.startswith("base_model.model.") for k in one)  # PEFT's key layout
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=5e-5, msg=k)
    moved = [k for k in one if ".lora_B." in k and float(one[k].abs().max()) > 0]
    assert moved  # B starts at zero: the adapters did train

    peft = pytest.importorskip("peft", reason="peft (optional) reads the adapter config")
    config = peft.LoraConfig.from_pretrained(str(tmp_path / "two" / "adapter"))
    assert config.peft_type == peft.PeftType.LORA and config.r == 4
    # the merged final/ models agree too
    a, b = (load_file(tmp_path / run_ / "final" / "model.safetensors") for run_ in ("one", "two"))
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=5e-5, msg=k)
