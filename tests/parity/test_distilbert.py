"""DistilBERT against `transformers` on tiny random models, both ways (fp32, 1e-4), and its presets.

HF -> plmlab: a random DistilBERT (every tensor perturbed, so a swapped LayerNorm or a missing
bias shows) is saved, loaded by `plmlab.load_pretrained` and compared on a padded batch.
plmlab -> HF: the loaded model (and a freshly built preset) is saved by `plmlab.save_pretrained`
and loaded by the class `architectures` names.
"""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.modeling import count_parameters
from plmlab.presets import get_preset

transformers = pytest.importorskip("transformers")
from test_encoder_parity import compare, perturbed  # noqa: E402
from test_generation import run_cli  # noqa: E402  (`plmlab ...` in process: a subprocess adds only its start-up)

SMALL = dict(vocab_size=97, dim=32, n_layers=2, n_heads=4, hidden_dim=48, max_position_embeddings=40,
             dropout=0.0, attention_dropout=0.0, seq_classif_dropout=0.0)
CASES = [("DistilBertForMaskedLM", {}), ("DistilBertForMaskedLM", {"sinusoidal_pos_embds": True}),
         ("DistilBertForMaskedLM", {"activation": "relu"}), ("DistilBertForSequenceClassification", {}),
         ("DistilBertForTokenClassification", {}), ("DistilBertModel", {})]
IDS = [f"{cls}-{'-'.join(f'{k}={v}' for k, v in kw.items()) or 'default'}" for cls, kw in CASES]


def hf_model(cls: str, **kw):
    extra = {"num_labels": 3} if "Classification" in cls else {}
    torch.manual_seed(0)
    return perturbed(getattr(transformers, cls)(transformers.DistilBertConfig(**SMALL, **extra, **kw)))


def batch() -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 97, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    return {"input_ids": ids.masked_fill(mask == 0, 0), "attention_mask": mask}


def outputs(out, cls: str) -> dict:
    if cls.endswith("Model"):
        return {"last_hidden_state": out.last_hidden_state}
    return {"logits": out.logits}


@pytest.mark.parametrize("cls,kw", CASES, ids=IDS)
def test_load_from_hf_then_save_back(cls, kw, tmp_path):
    ref = hf_model(cls, **kw)
    ref.save_pretrained(tmp_path / "hf")
    model = plmlab.load_pretrained(tmp_path / "hf")
    assert model.config.type_vocab_size == 0 and not model.config.pair_head
    inputs = batch()
    with torch.no_grad():
        want = outputs(ref(**inputs), cls)
        assert max(t.abs().max() for t in want.values()) > 1e-2  # near-zero outputs would prove nothing
        compare(model(**inputs), want, inputs["attention_mask"])
    plmlab.save_pretrained(model, tmp_path / "ours")
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "distilbert" and saved["architectures"] == [cls]
    back = getattr(transformers, cls).from_pretrained(tmp_path / "ours").eval()
    with torch.no_grad():
        for name, t in outputs(back(**inputs), cls).items():
            torch.testing.assert_close(t, want[name], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls,config", [
    ("DistilBertForMaskedLM", {}),
    # what `plmlab finetune --task classification` makes of the preset (finetune/classification.py)
    ("DistilBertForSequenceClassification", dict(head="none", pooler=True, classifier="sequence",
                                                 label_names=["a", "b", "c"])),
])
def test_preset_saves_as_distilbert(cls, config, tmp_path):
    """A freshly built plmlab model (our init, perturbed) loads in transformers with the same outputs;
    the preset's pooler is DistilBERT's ReLU pre_classifier, so a classifier made from it saves as one."""
    torch.manual_seed(0)
    model = perturbed(plmlab.build_model(get_preset("distilbert-tiny").replace(dropout=0.0, attn_dropout=0.0,
                                                                               **config)))
    plmlab.save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [cls]
    ref = getattr(transformers, cls).from_pretrained(tmp_path).eval()
    inputs = {k: v % 2048 for k, v in batch().items()}
    with torch.no_grad():
        compare(model(**inputs), outputs(ref(**inputs), cls), inputs["attention_mask"])
    assert sum(p.numel() for p in ref.parameters()) == count_parameters(model.config)["params"]


def test_relu_pooler_is_not_bert_tanh_pooler():
    """The pooler's activation is read: the same weights give other logits under tanh."""
    config = get_preset("distilbert-tiny").replace(head="none", pooler=True, pooler_activation="relu",
                                                   classifier="sequence", label_names=["a", "b"])
    torch.manual_seed(0)
    relu = perturbed(plmlab.build_model(config))
    tanh = plmlab.build_model(config.replace(pooler_activation="tanh")).eval()
    tanh.load_state_dict(relu.state_dict())
    ids = torch.randint(5, 2048, (2, 9))
    assert not torch.allclose(relu(input_ids=ids).logits, tanh(input_ids=ids).logits)


def test_distilbert_base_count_equals_transformers_and_the_paper():
    config = get_preset("distilbert-base")
    with torch.device("meta"):
        hf = transformers.DistilBertForMaskedLM(transformers.DistilBertConfig())
    assert count_parameters(config)["params"] == hf.num_parameters() == 66_985_530
    assert abs(count_parameters(config)["params"] - 66e6) / 66e6 < 0.02  # Sanh et al. 2019, section 3: 66M
    assert (config.n_layers, config.d_model, config.n_heads, config.d_ff, config.vocab_size) == (6, 768, 12, 3072, 30522)


def test_info_shows_a_distilbert_checkpoint(tmp_path):
    hf_model("DistilBertForMaskedLM").save_pretrained(tmp_path)
    code, out, stderr = run_cli(["info", str(tmp_path), "--json"])
    assert code == 0, stderr
    ref = transformers.DistilBertForMaskedLM.from_pretrained(tmp_path)
    assert json.loads(out)["params"] == ref.num_parameters()
