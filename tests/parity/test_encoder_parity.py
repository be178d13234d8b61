"""BERT / RoBERTa / ALBERT against `transformers` on tiny random models, in both directions.

HF -> plmlab: a random HF model (every tensor perturbed, so a swapped LayerNorm or a missing
bias shows) is saved, loaded with `plmlab.load_pretrained`, and the fp32 outputs compared on a
padded batch. plmlab -> HF: a plmlab model is saved with `plmlab.save_pretrained` and loaded by
the HF class that `architectures` names.
"""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.modeling import count_parameters
from plmlab.presets import get_preset

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48,
             max_position_embeddings=40, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
CONFIGS = {
    "bert": lambda **kw: transformers.BertConfig(**SMALL, **kw),
    "roberta": lambda **kw: transformers.RobertaConfig(**{**SMALL, "max_position_embeddings": 42}, type_vocab_size=1,
                                                       pad_token_id=1, bos_token_id=0, eos_token_id=2, **kw),
    "albert": lambda **kw: transformers.AlbertConfig(**SMALL, embedding_size=16, classifier_dropout_prob=0.0, **kw),
}
CASES = [
    ("bert", "BertModel"), ("bert", "BertForMaskedLM"), ("bert", "BertForPreTraining"),
    ("bert", "BertForSequenceClassification"), ("bert", "BertForTokenClassification"),
    ("roberta", "RobertaForMaskedLM"), ("roberta", "RobertaForSequenceClassification"),
    ("albert", "AlbertForPreTraining"), ("albert", "AlbertForMaskedLM"), ("albert", "AlbertForSequenceClassification"),
]


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def batch(family: str, pad_id: int) -> dict:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 97, (3, 11), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    mask[2, 4:] = 0
    ids = ids.masked_fill(mask == 0, pad_id)
    out = {"input_ids": ids, "attention_mask": mask}
    if family != "roberta":
        types = torch.zeros_like(ids)
        types[:, 5:] = 1
        out["token_type_ids"] = types
    return out


def hf_outputs(out, cls: str) -> dict:
    """The tensors to compare, keyed by our ModelOutput field names."""
    if cls.endswith("Model"):
        return {"last_hidden_state": out.last_hidden_state, "pooled": out.pooler_output}
    if cls.endswith("ForPreTraining"):
        pair = out.seq_relationship_logits if hasattr(out, "seq_relationship_logits") else out.sop_logits
        return {"logits": out.prediction_logits, "pair_logits": pair}
    return {"logits": out.logits}


def compare(ours, theirs: dict, mask: torch.Tensor) -> None:
    for name, ref in theirs.items():
        got = getattr(ours, name)
        if got.dim() == 3:  # padded positions are garbage in both: compare real tokens only
            got, ref = got[mask.bool()], ref[mask.bool()]
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4, msg=lambda m: f"{name}: {m}")


def hf_model(family: str, cls: str):
    extra = {"num_labels": 3} if "Classification" in cls else {}
    torch.manual_seed(0)
    return perturbed(getattr(transformers, cls)(CONFIGS[family](**extra)))


@pytest.mark.parametrize("family,cls", CASES)
def test_load_from_hf(family, cls, hf_dir):
    ref = hf_model(family, cls)
    ref.save_pretrained(hf_dir)
    model = plmlab.load_pretrained(hf_dir)
    inputs = batch(family, ref.config.pad_token_id)
    with torch.no_grad():
        compare(model(**inputs), hf_outputs(ref(**inputs), cls), inputs["attention_mask"])


@pytest.mark.parametrize("family,cls", CASES)
def test_save_to_hf(family, cls, hf_dir, tmp_path):
    """HF -> plmlab -> save -> HF gives the same outputs and names the same class."""
    ref = hf_model(family, cls)
    ref.save_pretrained(hf_dir)
    model = plmlab.load_pretrained(hf_dir)
    out_dir = tmp_path / "ours"
    plmlab.save_pretrained(model, out_dir)
    saved = json.loads((out_dir / "config.json").read_text())
    assert saved["architectures"] == [cls]
    back = getattr(transformers, cls).from_pretrained(out_dir).eval()
    inputs = batch(family, ref.config.pad_token_id)
    with torch.no_grad():
        ours, theirs = ref(**inputs), back(**inputs)
    for name, t in hf_outputs(theirs, cls).items():
        torch.testing.assert_close(t, hf_outputs(ours, cls)[name], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("preset,cls", [("bert-tiny", "BertForPreTraining"), ("roberta-tiny", "RobertaForMaskedLM"),
                                        ("albert-tiny", "AlbertForPreTraining")])
def test_preset_saves_as_hf(preset, cls, tmp_path):
    """A freshly built plmlab model (our init) loads in transformers with the same outputs."""
    torch.manual_seed(0)
    model = perturbed(plmlab.build_model(preset))
    plmlab.save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [cls]
    ref = getattr(transformers, cls).from_pretrained(tmp_path).eval()
    family = preset.split("-")[0]
    inputs = batch(family, model.config.pad_token_id)
    with torch.no_grad():
        compare(model(**inputs), hf_outputs(ref(**inputs), cls), inputs["attention_mask"])
    assert sum(p.numel() for p in ref.parameters()) == count_parameters(model.config)["params"]


@pytest.mark.parametrize("preset,cls", [("bert-tiny", "BertForTokenClassification"),
                                        ("albert-tiny", "AlbertForTokenClassification"),
                                        ("roberta-tiny", "RobertaForTokenClassification")])
def test_token_classifier_fine_tuned_from_a_pooled_model_loads_back(preset, cls, tmp_path):
    """A tagger fine-tuned from a model with a pooler (bert-tiny, albert-tiny: MLM + NSP/SOP)
    keeps the pooler; *ForTokenClassification has none, yet plmlab and transformers both load the
    saved directory and give the logits the model had."""
    torch.manual_seed(0)
    base = get_preset(preset)
    config = base.replace(head="none", pair_head=False, classifier="token", label_names=["O", "B", "I"],
                          pooler=True, dropout=0.0, attn_dropout=0.0)
    model = perturbed(plmlab.build_model(config))
    plmlab.save_pretrained(model, tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == [cls]
    back = plmlab.load_pretrained(tmp_path)
    ref = getattr(transformers, cls).from_pretrained(tmp_path).eval()
    inputs = batch(preset.split("-")[0], model.config.pad_token_id)
    with torch.no_grad():
        want = model(**inputs).logits  # (B, T, 3)
        torch.testing.assert_close(back(**inputs).logits, want, atol=0, rtol=0)
        compare(back(**inputs), {"logits": ref(**inputs).logits}, inputs["attention_mask"])
    assert back.config.pooler and back.config.label_names == ["O", "B", "I"]


def test_checkpoint_with_extra_heads_loads_them(hf_dir):
    """bert-base-uncased says BertForMaskedLM yet stores the pooler and NSP head: keep them."""
    ref = hf_model("bert", "BertForPreTraining")
    ref.save_pretrained(hf_dir)
    cfg = json.loads((hf_dir / "config.json").read_text())
    cfg["architectures"] = ["BertForMaskedLM"]
    (hf_dir / "config.json").write_text(json.dumps(cfg))
    model = plmlab.load_pretrained(hf_dir)
    assert model.config.pair_head and model.config.pooler and model.config.head == "mlm"


@pytest.mark.parametrize("name,params,tol", [
    ("bert-base", 110e6, 0.01), ("bert-large", 340e6, 0.015), ("roberta-base", 125e6, 0.01),
    ("roberta-large", 355e6, 0.01), ("albert-base", 12e6, 0.02), ("albert-large", 18e6, 0.01),
    ("albert-xlarge", 60e6, 0.02),
])
def test_paper_sizes(name, params, tol):
    counted = count_parameters(get_preset(name))["params"]
    assert abs(counted - params) / params < tol, counted


def test_albert_xxlarge_matches_released_config():
    # The paper's Table 1 says 235M; the released xxlarge configuration (E 128, H 4096, FFN
    # 16384, 12 shared layers, vocab 30000) has 222.6M in AlbertModel, 223.2M with the heads.
    assert abs(count_parameters(get_preset("albert-xxlarge"))["params"] - 223.2e6) < 0.1e6


def test_albert_is_much_smaller_than_bert_of_the_same_shape():
    albert = count_parameters(get_preset("albert-large"))["params"]
    bert = count_parameters(get_preset("albert-large").replace(embedding_dim=None, shared_layers=False))["params"]
    assert bert / albert > 15


def test_overlong_input_is_a_clear_error():
    model = plmlab.build_model("bert-tiny").eval()
    with pytest.raises(plmlab.PlmlabError, match="longer than"):
        model(torch.zeros(1, model.config.max_positions + 1, dtype=torch.long))


def test_old_buffers_are_ignored_but_unknown_tensors_refused(hf_dir):
    from safetensors.torch import load_file, save_file

    hf_model("bert", "BertForMaskedLM").save_pretrained(hf_dir)
    tensors = load_file(hf_dir / "model.safetensors")
    tensors["bert.embeddings.position_ids"] = torch.arange(40)[None]  # transformers < 4.31
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})
    plmlab.load_pretrained(hf_dir)
    tensors["bert.encoder.extra.weight"] = torch.zeros(2)
    save_file(tensors, hf_dir / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(plmlab.PlmlabError, match="does not know"):
        plmlab.load_pretrained(hf_dir)
