"""LoRA under torchrun: `plmlab sft --lora-r 4` on 2 gloo ranks trains the same adapter as one
process with the same global batch -- under DDP, and under FSDP2 (`--strategy fsdp`, also
interrupted and resumed) -- and OUT/adapter is in PEFT's format (peft reads its config; the keys
are PEFT's)."""

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


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """A gpt-tiny without dropout, 32 conversations, and the one-process LoRA run (`one`)."""
    folder = tmp_path_factory.mktemp("lora-ddp")
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny", dropout=0.0, attn_dropout=0.0), folder / "model",
                           tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    (folder / "chat.jsonl").write_text("".join(json.dumps(c) + "\n" for c in CONVS))
    run(folder, folder / "one", batch_size=8, lr=3e-3, lora=LoraOptions(r=4, targets="attention,mlp"))
    return folder


def assert_same_adapter(ours, theirs) -> None:
    one, two = (load_file(out / "adapter" / "adapter_model.safetensors") for out in (theirs, ours))
    assert one.keys() == two.keys() and any(".lora_A." in k for k in one)
    assert all(k.startswith("base_model.model.") for k in one)  # PEFT's key layout
    for k in one:
        torch.testing.assert_close(two[k], one[k], rtol=1e-4, atol=5e-5, msg=k)
    assert [k for k in one if ".lora_B." in k and float(one[k].abs().max()) > 0]  # B starts at 0: it trained
    a, b = (load_file(out / "final" / "model.safetensors") for out in (theirs, ours))  # the merged models too
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=5e-5, msg=k)


def test_ddp_two_ranks_train_the_adapter_one_process_trains(root, tmp_path):
    done = torchrun(cli_args(root, tmp_path / "two", batch_size=4, lr=3e-3, **LORA))  # 2 ranks x 4 = 8
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_adapter(tmp_path / "two", root / "one")
    peft = pytest.importorskip("peft", reason="peft (optional) reads the adapter config")
    config = peft.LoraConfig.from_pretrained(str(tmp_path / "two" / "adapter"))
    assert config.peft_type == peft.PeftType.LORA and config.r == 4


def test_fsdp2_two_ranks_interrupted_and_resumed_train_the_same_adapter(root, tmp_path):
    args = cli_args(root, tmp_path / "fsdp", batch_size=4, lr=3e-3, strategy="fsdp", **LORA)
    stopped = torchrun(args, env={"PLMLAB_TEST_FAULT": "sigint@3"})
    assert stopped.returncode != 0 and "continue with --resume" in stopped.stderr
    assert not (tmp_path / "fsdp" / "final").exists()
    done = torchrun(args + ["--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "from step-00000003" in done.stderr
    assert_same_adapter(tmp_path / "fsdp", root / "one")
