"""CLI of the encoder family on tiny models: fill-mask, objective views of NSP / SOP, info."""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.tokenizers import train_tokenizer

TEXTS = ["the cat sat on the mat", "a dog ran in the park", "the bird sang in the tree"] * 5


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    out = {}
    for preset in ("bert-tiny", "roberta-tiny", "albert-tiny"):
        tok = train_tokenizer(TEXTS, preset.split("-")[0], vocab_size=300, min_frequency=1)
        torch.manual_seed(0)
        model = plmlab.build_model(preset, vocab_size=tok.vocab_size, max_positions=32)
        out[preset] = tmp_path_factory.mktemp(preset)
        plmlab.save_pretrained(model, out[preset], tokenizer=tok)
    return out


@pytest.mark.parametrize("preset,text", [("bert-tiny", "the cat [MASK] on the mat"),
                                         ("roberta-tiny", "the cat<mask> on the mat"),
                                         ("roberta-tiny", "the cat [MASK] on the mat"),
                                         ("albert-tiny", "the cat [MASK] on the [MASK]")])
def test_fill_mask_reports_the_model_probabilities(dirs, preset, text, capsys):
    assert main(["fill-mask", "--model", str(dirs[preset]), "--top-k", "3", "--json", text]) == 0
    out = json.loads(capsys.readouterr().out)
    model = plmlab.load_pretrained(dirs[preset])
    tok = plmlab.tokenizers.load_tokenizer(dirs[preset])
    ids = tok.encode(text.replace("[MASK]", tok.special_tokens["mask"]))
    with torch.no_grad():
        probs = model(input_ids=torch.tensor([ids])).logits[0].softmax(-1)
    assert [m["position"] for m in out["masks"]] == [i for i, t in enumerate(ids) if t == tok.mask_id]
    for record in out["masks"]:
        top = probs[record["position"]].topk(3)
        assert [p["token_id"] for p in record["predictions"]] == top.indices.tolist()
        assert [p["score"] for p in record["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-6)


def test_fill_mask_human_output(dirs, capsys):
    assert main(["fill-mask", "--model", str(dirs["bert-tiny"]), "the [MASK] sat"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "the [MASK] sat" and len(lines) == 6


def test_fill_mask_errors(dirs, tmp_path, capsys):
    assert main(["fill-mask", "--model", str(dirs["bert-tiny"]), "no mask here"]) == 2
    assert "no [MASK]" in capsys.readouterr().err
    assert main(["fill-mask", "--model", str(dirs["bert-tiny"]), "the " * 40 + "[MASK]"]) == 2
    assert "--truncate" in capsys.readouterr().err
    assert main(["fill-mask", "--model", str(dirs["bert-tiny"]), "--truncate", "[MASK] " + "the " * 40]) == 0
    capsys.readouterr()
    base = plmlab.load_pretrained(dirs["bert-tiny"])
    headless = base.__class__(base.config.replace(head="none", pair_head=False))
    plmlab.save_pretrained(headless, tmp_path, tokenizer=plmlab.tokenizers.load_tokenizer(dirs["bert-tiny"]))
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["BertModel"]
    assert main(["fill-mask", "--model", str(tmp_path), "the [MASK]"]) == 2
    assert "no MLM head" in capsys.readouterr().err


@pytest.mark.parametrize("name,key", [("mlm+nsp", "next_sentence_label"), ("mlm+sop", "sentence_order_label"),
                                      ("nsp", "next_sentence_label"), ("sop", "sentence_order_label")])
def test_objective_cli_pairs(dirs, name, key, capsys):
    style = "albert-tiny" if "sop" in name else "bert-tiny"
    assert main(["objective", name, "--text", "the cat sat on the mat", "--text-b", "a dog ran in the park",
                 "--tokenizer", str(dirs[style]), "--json", "--seed", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert key in out and out[key] in (0, 1)
    types, ids = out["token_type_ids"], out["input_ids"]
    assert ids[0] == out["cls_token_id"] and ids.count(out["sep_token_id"]) == 2
    b_start = ids.index(out["sep_token_id"]) + 1
    assert set(types[:b_start]) == {0} and set(types[b_start:]) == {1}
    a, b = out["original_ids"], out["original_ids_b"]
    swapped = out[key] == 1 and "sop" in name  # NSP keeps the given order (label 0: B follows A)
    first, second = (b, a) if swapped else (a, b)
    assert b_start - 2 == len(first) and len(ids) - b_start - 1 == len(second)
    if name in ("nsp", "sop"):  # no masking: the pair itself
        assert ids[1:b_start - 1] == first and ids[b_start:-1] == second
    else:  # masked positions hold the original ids as labels
        original = [None] + first + [None] + second + [None]
        assert all(lab == original[i] for i, lab in enumerate(out["labels"]) if lab != -100)
        assert any(lab != -100 for lab in out["labels"])


def test_info_shows_albert_savings(capsys):
    assert main(["info", "albert-base", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params_unshared_unfactorised"] > 8 * out["params"]
    assert main(["info", "albert-base"]) == 0
    assert "the matching BERT" in capsys.readouterr().out
