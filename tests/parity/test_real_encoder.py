"""A real published BERT (sentence-transformers' all-MiniLM-L6-v2, fixture `minilm_dir`) in
plmlab and in transformers: the same ids, hidden states, sentence embeddings, classifier and
fill-mask probabilities, and the model's 512 positions enforced (one error line, or --truncate).

Its tokenizer.json stores fixed padding to 128 and truncation at 128; transformers ignores both
unless a call asks for them, and so must plmlab (see plmlab.tokenizers.Tokenizer).
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.errors import PlmlabError
from plmlab.pipelines import encode
from plmlab.tokenizers import load_tokenizer

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.real_weights

TEXTS = [
    "A man is eating food.",
    "Café naïve résumé: Ångström's über-cool façade, São Paulo and Zürich.",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a very long word!",
    "Wait... what?! (Really) [yes] {no} -- 3.14159, 1,000,000 & 50% off; e-mail me@example.com",
    "你好，世界。東京タワー",
    "  Leading spaces,\ttabs and\nnewlines  ",
]
PAIR = ("How old are you?", "I am six years old.")
LONG = "The encoder reads every token of this sentence. " * 60  # about 600 tokens: past the 512 positions
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")


@pytest.fixture(scope="module")
def ours(minilm_dir):
    return plmlab.load_pretrained(minilm_dir).eval(), load_tokenizer(minilm_dir)


@pytest.fixture(scope="module")
def theirs(minilm_dir):
    return (transformers.BertModel.from_pretrained(minilm_dir, dtype=torch.float32).eval(),
            transformers.AutoTokenizer.from_pretrained(minilm_dir))


def with_head(minilm_dir, out, cls, **kwargs):
    """The published encoder under a new head (seeded initialisation), saved by transformers with
    the published tokenizer files as they are (stored padding and truncation included)."""
    torch.manual_seed(0)
    model = cls.from_pretrained(minilm_dir, dtype=torch.float32, **kwargs).eval()
    model.save_pretrained(out)
    for name in TOKENIZER_FILES:
        shutil.copy(minilm_dir / name, out / name)
    return model


def padded(tokenizer, rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) of plmlab's ids, right-padded with the tokenizer's [PAD]."""
    width = max(map(len, rows))
    ids = torch.tensor([r + [tokenizer.pad_id] * (width - len(r)) for r in rows])  # (B, T)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])  # (B, T)
    return ids, mask


def mean_pooled(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """sentence-transformers' recipe for this model: mean over the attended tokens, L2-normalised."""
    m = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)  # (B, d)
    return torch.nn.functional.normalize(pooled, p=2, dim=1)


def test_ids_equal_transformers(ours, theirs):
    tok, auto = ours[1], theirs[1]
    for text in TEXTS + [LONG]:
        assert tok.encode(text) == auto(text)["input_ids"], text
    assert len(tok.encode(TEXTS[0])) == 8  # not the stored 128
    assert len(tok.encode(LONG)) > 512  # not cut at the stored 128 either
    assert tok.encode_batch(TEXTS, add_special_tokens=True) == auto(TEXTS)["input_ids"]
    ids, types = tok.encode_pair(*PAIR)
    expected = auto(*PAIR)
    assert (ids, types) == (expected["input_ids"], expected["token_type_ids"])
    assert tok.model_max_length == auto.model_max_length == 512


def test_encode_enforces_the_model_positions(ours, theirs):
    """What an embedding built on plmlab.pipelines.encode gets: the model's 512 positions, not the
    stored 128: one error line, or transformers' cut (truncation=True) when asked."""
    (model, tok), auto = ours, theirs[1]
    with pytest.raises(PlmlabError, match="more than the model's 512 positions") as info:
        encode(tok, LONG, model.config.max_positions)
    assert "\n" not in str(info.value)
    assert encode(tok, LONG, model.config.max_positions, truncate=True) == auto(LONG, truncation=True)["input_ids"]
    assert encode(tok, TEXTS[1], model.config.max_positions) == auto(TEXTS[1])["input_ids"]


@torch.no_grad()
def test_hidden_states_and_sentence_embeddings(ours, theirs):
    (model, tok), (bert, auto) = ours, theirs
    ids, mask = padded(tok, [tok.encode(t) for t in TEXTS])
    batch = auto(TEXTS, padding=True, return_tensors="pt")
    assert torch.equal(ids, batch["input_ids"]) and torch.equal(mask, batch["attention_mask"])
    got = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    ref = bert(**batch).last_hidden_state
    real = mask.bool()  # padded positions are garbage in both
    torch.testing.assert_close(got[real], ref[real], atol=1e-5, rtol=1e-5)
    ours_emb, ref_emb = mean_pooled(got, mask), mean_pooled(ref, batch["attention_mask"])
    torch.testing.assert_close(ours_emb, ref_emb, atol=1e-5, rtol=1e-5)
    cosine = (ours_emb * ref_emb).sum(-1)
    assert cosine.min() > 0.99999


@pytest.fixture(scope="module")
def classifier(minilm_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("minilm-cls")
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = with_head(minilm_dir, out, transformers.BertForSequenceClassification, num_labels=3,
                      id2label=labels, label2id={v: k for k, v in labels.items()})
    return out, model, transformers.AutoTokenizer.from_pretrained(out)


@torch.no_grad()
def test_classify_equals_transformers(classifier, capsys):
    folder, model, auto = classifier
    names = list(model.config.id2label.values())
    clf = plmlab.pipeline("text-classification", model=folder)
    for text in TEXTS[:3]:
        probs = model(**auto(text, return_tensors="pt")).logits.softmax(-1)[0]
        got = clf(text)["scores"]
        assert [got[n] for n in names] == pytest.approx(probs.tolist(), abs=1e-5), text
    probs = model(**auto(*PAIR, return_tensors="pt")).logits.softmax(-1)[0]
    got = clf({"text": PAIR[0], "text_pair": PAIR[1]})["scores"]
    assert [got[n] for n in names] == pytest.approx(probs.tolist(), abs=1e-5)

    assert main(["classify", "--model", str(folder), "--json", TEXTS[1]]) == 0
    printed = json.loads(capsys.readouterr().out)
    probs = model(**auto(TEXTS[1], return_tensors="pt")).logits.softmax(-1)[0]
    assert [printed["scores"][n] for n in names] == pytest.approx(probs.tolist(), abs=1e-5)


@torch.no_grad()
def test_classify_long_text_is_an_error_or_cut_at_512(classifier, capsys):
    folder, model, auto = classifier
    assert main(["classify", "--model", str(folder), LONG]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "more than the model's 512 positions" in err
    assert "--truncate" in err
    assert main(["classify", "--model", str(folder), "--truncate", "--json", LONG]) == 0
    printed = json.loads(capsys.readouterr().out)
    cut = auto(LONG, truncation=True, return_tensors="pt")  # transformers' cut: model_max_length, [SEP] kept
    assert cut["input_ids"].shape[1] == 512
    probs = model(**cut).logits.softmax(-1)[0]
    names = list(model.config.id2label.values())
    assert [printed["scores"][n] for n in names] == pytest.approx(probs.tolist(), abs=1e-5)


@torch.no_grad()
def test_fill_mask_equals_transformers_and_enforces_512(minilm_dir, tmp_path, capsys):
    model = with_head(minilm_dir, tmp_path, transformers.BertForMaskedLM)
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path)
    text = "The café in São Paulo serves [MASK] every morning."
    assert main(["fill-mask", "--model", str(tmp_path), "--top-k", "3", "--json", text]) == 0
    printed = json.loads(capsys.readouterr().out)["masks"]
    batch = auto(text, return_tensors="pt")
    position = batch["input_ids"][0].tolist().index(auto.mask_token_id)
    top = model(**batch).logits[0, position].softmax(-1).topk(3)
    assert [m["position"] for m in printed] == [position]
    assert [p["token_id"] for p in printed[0]["predictions"]] == top.indices.tolist()
    assert [p["score"] for p in printed[0]["predictions"]] == pytest.approx(top.values.tolist(), abs=1e-5)

    assert main(["fill-mask", "--model", str(tmp_path), LONG + "[MASK]"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "more than the model's 512 positions" in err
    assert main(["fill-mask", "--model", str(tmp_path), "--truncate", "--json", "[MASK] " + LONG]) == 0
    assert json.loads(capsys.readouterr().out)["masks"][0]["position"] == 1
