"""ERNIE against `transformers` (`ernie` model type) on tiny random models, in both directions,
with and without the task-type embeddings (use_task_id); the presets and `plmlab info`."""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.config import Config
from plmlab.errors import PlmlabError
from plmlab.modeling import count_parameters
from plmlab.presets import get_preset

transformers = pytest.importorskip("transformers")
from test_encoder_parity import perturbed  # noqa: E402  (every tensor moved: a missed one shows)
from test_generation import run_cli  # noqa: E402  (`plmlab ...` in process: a subprocess adds only its start-up)

SMALL = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, type_vocab_size=4)


def batch(task_types: bool) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 97, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    out = {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask,
           "token_type_ids": (torch.arange(11) >= 5).long().expand(3, 11).contiguous()}
    if task_types:
        out["task_type_ids"] = torch.tensor([[0] * 11, [1] * 11, [2] * 11])  # a different task per row
    return out


@pytest.mark.parametrize("use_task_id", [True, False])
def test_hf_to_plmlab(hf_dir, use_task_id):
    hf = perturbed(transformers.ErnieForMaskedLM(transformers.ErnieConfig(**SMALL, use_task_id=use_task_id,
                                                                          task_type_vocab_size=3)))
    hf.save_pretrained(hf_dir)
    ours = plmlab.load_pretrained(hf_dir)
    assert ours.config.task_type_vocab_size == (3 if use_task_id else 0)
    b = batch(use_task_id)
    with torch.no_grad():
        want, got = hf(**b), ours(**b)
    keep = b["attention_mask"].bool()
    torch.testing.assert_close(got.logits[keep], want.logits[keep], atol=1e-4, rtol=1e-4)
    if use_task_id:  # the task ids matter: all zeros gives other logits
        zeros = {**b, "task_type_ids": torch.zeros_like(b["task_type_ids"])}
        with torch.no_grad():
            assert not torch.allclose(ours(**zeros).logits[2], got.logits[2], atol=1e-3)


@pytest.mark.parametrize("task_types", [3, 0])
def test_plmlab_to_hf(hf_dir, task_types):
    config = get_preset("ernie-tiny").replace(vocab_size=97, max_positions=40, task_type_vocab_size=task_types,
                                              dropout=0.0, attn_dropout=0.0)
    ours = perturbed(plmlab.build_model(config))
    plmlab.save_pretrained(ours, hf_dir)
    saved = json.loads((hf_dir / "config.json").read_text())
    assert saved["model_type"] == "ernie" and saved["architectures"] == ["ErnieForMaskedLM"]
    assert saved["use_task_id"] is bool(task_types)
    hf = transformers.ErnieForMaskedLM.from_pretrained(hf_dir).eval()
    b = batch(bool(task_types))
    with torch.no_grad():
        want, got = hf(**b), ours(**b)
    keep = b["attention_mask"].bool()
    torch.testing.assert_close(got.logits[keep], want.logits[keep], atol=1e-4, rtol=1e-4)
    again = plmlab.load_pretrained(hf_dir)  # and back: the same tensors
    assert all(torch.equal(a, again.state_dict()[k]) for k, a in ours.state_dict().items())


@pytest.mark.parametrize("name", ["ernie-1.0-base", "ernie-3.0-base-zh", "ernie-tiny"])
def test_preset_counts_equal_transformers(name):
    from plmlab.hf import choose_adapter

    config = get_preset(name)
    adapter = choose_adapter(config)
    assert adapter.model_type == "ernie"
    with torch.device("meta"):
        hf = transformers.ErnieForMaskedLM(transformers.ErnieConfig(**adapter.config_to_hf(config)))
    assert count_parameters(config)["params"] == hf.num_parameters()


def test_info_on_an_hf_ernie_checkpoint(hf_dir):
    hf = transformers.ErnieForMaskedLM(transformers.ErnieConfig(**SMALL, use_task_id=True, task_type_vocab_size=3))
    hf.save_pretrained(hf_dir)
    code, out, stderr = run_cli(["info", str(hf_dir), "--json"])
    assert code == 0, stderr
    info = json.loads(out)
    assert info["params"] == hf.num_parameters() and info["params_non_embedding"] < info["params"]


def test_task_types_need_an_encoder():
    with pytest.raises(PlmlabError, match="task_type_vocab_size .* needs arch=encoder"):
        Config(arch="decoder", task_type_vocab_size=3)
    with pytest.raises(PlmlabError, match="task_type_vocab_size must be >= 0"):
        get_preset("ernie-tiny").replace(task_type_vocab_size=-1)
