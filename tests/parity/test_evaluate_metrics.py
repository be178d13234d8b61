"""plmlab.evaluate's metrics against independent computations on tiny random models:
perplexity and bits per byte (plain loops over the logits), sliding windows, GLM blanks,
pseudo-log-likelihood (one mask at a time), span corruption, and seqeval's entity F1."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import plmlab
from plmlab.evaluate.labels import entity_scores, evaluate_classification, evaluate_token_classification
from plmlab.evaluate.mlm import evaluate_mlm
from plmlab.evaluate.perplexity import evaluate_perplexity, windows
from plmlab.evaluate.span import evaluate_span_corruption
from plmlab.evaluate.text import document_texts, validation_documents
from plmlab.tokenizers import train_tokenizer

TEXTS = ["The parser reads a file and returns a list of tokens. It writes the cache when it closes.",
         "Un café coûte deux euros. 中文 text has bytes of three.",
         "A stream buffer opens a path by name; the error names the file."]


def tokenizer(style: str):
    return train_tokenizer(TEXTS * 30, style, vocab_size=320, min_frequency=1)


def model(preset: str, tok, **kw):
    torch.manual_seed(0)
    return plmlab.build_model(preset, vocab_size=tok.vocab_size, dropout=0.0, attn_dropout=0.0, **kw).eval()


@pytest.fixture(scope="module")
def gpt():
    tok = tokenizer("gpt2")
    return model("gpt-tiny", tok), tok


@torch.no_grad()
def plain_nll(m, tok, text: str) -> np.ndarray:
    """NLL of every token of `<eos> text` after the first, the whole text in one forward pass."""
    ids = [tok.eos_id] + tok.encode(text, add_special_tokens=False)
    logp = m(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)  # (T, V)
    return np.array([-float(logp[t - 1, ids[t]]) for t in range(1, len(ids))])


def test_perplexity_is_exp_of_the_mean_token_nll(gpt):
    m, tok = gpt
    nll = np.concatenate([plain_nll(m, tok, t) for t in TEXTS])
    result = evaluate_perplexity(m, tok, TEXTS, batch_size=2)
    assert result.metrics["tokens"] == len(nll)
    assert result.metrics["perplexity"] == pytest.approx(math.exp(nll.mean()), rel=1e-5)
    assert result.metrics["nll"] == pytest.approx(nll.mean(), rel=1e-5)
    assert [i["tokens"] for i in result.items] == [len(plain_nll(m, tok, t)) for t in TEXTS]
    assert result.metrics["tokens_per_s"] > 0


def test_bits_per_byte_is_total_nll_in_bits_over_utf8_bytes(gpt):
    m, tok = gpt
    text = TEXTS[1]  # accents and CJK: bytes != characters
    assert len(text.encode("utf-8")) > len(text)
    expected = plain_nll(m, tok, text).sum() / math.log(2) / len(text.encode("utf-8"))
    result = evaluate_perplexity(m, tok, [text])
    assert result.metrics["bits_per_byte"] == pytest.approx(expected, rel=1e-5)
    assert result.metrics["bytes"] == len(text.encode("utf-8"))


@pytest.mark.parametrize("stride", [1, 7, 64])
def test_sliding_window_equals_plain_perplexity_when_the_text_fits(gpt, stride):
    m, tok = gpt
    one = evaluate_perplexity(m, tok, TEXTS, max_length=64, stride=64)
    assert max(i["tokens"] for i in one.items) + 1 <= 64  # every text fits one window
    assert evaluate_perplexity(m, tok, TEXTS, max_length=64, stride=stride).metrics["perplexity"] == \
        pytest.approx(one.metrics["perplexity"], rel=1e-5)


def test_sliding_window_is_close_and_sane_when_the_text_does_not_fit(gpt):
    m, tok = gpt
    long = " ".join(TEXTS * 3)
    full = evaluate_perplexity(m, tok, [long], max_length=128, stride=128).metrics
    for length, stride in ((32, 8), (32, 32), (16, 4)):
        cut = evaluate_perplexity(m, tok, [long], max_length=length, stride=stride).metrics
        assert cut["tokens"] == full["tokens"]  # each token scored once
        assert math.isfinite(cut["perplexity"]) and cut["perplexity"] > 1
        assert cut["perplexity"] == pytest.approx(full["perplexity"], rel=0.15)


@pytest.mark.parametrize("n,length,stride", [(10, 6, 3), (50, 16, 5), (5, 8, 8), (17, 4, 1)])
def test_windows_score_each_token_once_with_bounded_context(n, length, stride):
    scored = []
    for begin, start, end in windows(n, length, stride):
        # the context is bounded by the stride, but the last window reaches back a whole length
        assert end - begin <= length and (start - begin <= length - stride or begin == 0 or end == n)
        scored += range(start, end)
    assert scored == list(range(n))


@torch.no_grad()
def test_glm_perplexity_scores_the_text_as_one_gmask_blank():
    from plmlab.families.glm import GlmTokens, blank_inputs

    tok = tokenizer("glm")
    m = model("glm-tiny", tok)
    g = GlmTokens.from_tokenizer(tok)
    nll = []
    for text in TEXTS:  # Part A = [CLS] [gMASK] <eos>; Part B = [sop] text[:-1] predicts the text
        ids = tok.encode(text, add_special_tokens=False)
        inputs = {k: torch.from_numpy(v)[None] for k, v in blank_inputs([g.cls, g.gmask, g.eos], 1, [g.sop] + ids[:-1]).items()}
        logp = m(**inputs).logits[0, 3:].log_softmax(-1)  # (len(ids), V)
        nll += [-float(logp[t, ids[t]]) for t in range(len(ids))]
    result = evaluate_perplexity(m, tok, TEXTS, batch_size=3)
    assert result.metrics["perplexity"] == pytest.approx(math.exp(np.mean(nll)), rel=1e-5)
    windowed = evaluate_perplexity(m, tok, TEXTS, max_length=12, stride=4, batch_size=5).metrics
    assert windowed["tokens"] == len(nll) and math.isfinite(windowed["perplexity"])


@pytest.fixture(scope="module")
def bert():
    tok = tokenizer("bert")
    return model("bert-tiny", tok), tok


@torch.no_grad()
def test_pll_equals_a_one_mask_at_a_time_loop(bert):
    m, tok = bert
    total, count = 0.0, 0
    for text in TEXTS:
        ids = tok.encode(text)  # [CLS] ... [SEP], the objective's wrapping
        for t in range(1, len(ids) - 1):
            masked = list(ids)
            masked[t] = tok.mask_id
            inputs = torch.tensor([masked])
            logp = m(input_ids=inputs, attention_mask=torch.ones_like(inputs),
                     token_type_ids=torch.zeros_like(inputs)).logits[0, t].log_softmax(-1)
            total, count = total + float(logp[ids[t]]), count + 1
    result = evaluate_mlm(m, tok, TEXTS, batch_size=5)
    assert result.metrics["tokens"] == count
    assert result.metrics["pll"] == pytest.approx(total, rel=1e-5)
    assert result.metrics["pseudo_perplexity"] == pytest.approx(math.exp(-total / count), rel=1e-5)


def test_masked_accuracy_is_seeded_and_selects_15_percent(bert):
    m, tok = bert
    a, b = evaluate_mlm(m, tok, TEXTS * 4, seed=3, pll=False), evaluate_mlm(m, tok, TEXTS * 4, seed=3, pll=False)
    assert a.metrics == {**b.metrics, "tokens_per_s": a.metrics["tokens_per_s"]}
    tokens = sum(len(tok.encode(t, add_special_tokens=False)) for t in TEXTS * 4)
    assert a.metrics["masked_tokens"] == pytest.approx(0.15 * tokens, abs=len(TEXTS) * 4)
    assert 0.0 <= a.metrics["masked_accuracy"] <= 1.0


@torch.no_grad()
def test_span_corruption_loss_is_the_models_own_loss():
    from plmlab.objectives import example_rng
    from plmlab.objectives.span import SpanCorruption
    from plmlab.evaluate.span import stream_windows

    tok = tokenizer("t5")
    m = model("t5-tiny", tok)
    result = evaluate_span_corruption(m, tok, TEXTS, seed=1, max_length=32, batch_size=64)
    objective = SpanCorruption(tok, 32)
    batch = objective.collate([objective.corrupt_ids(w, example_rng(1, 0, i))
                               for i, w in enumerate(stream_windows(tok, TEXTS, objective.raw_length))])
    out = m(**batch)
    assert result.metrics["loss"] == pytest.approx(float(out.loss), rel=1e-5)
    keep = batch["labels"] != -100
    assert result.metrics["accuracy"] == pytest.approx(float((out.logits.argmax(-1) == batch["labels"])[keep].float().mean()))
    assert evaluate_span_corruption(m, tok, TEXTS, seed=1, max_length=32, batch_size=2).metrics["loss"] == \
        pytest.approx(result.metrics["loss"], rel=1e-5)


TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "I-MISC", "PER", "B", "I"]


@pytest.mark.parametrize("seed", range(8))
def test_entity_scores_equal_seqeval(seed):
    seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval (the test oracle) is not installed")
    rng = np.random.default_rng(seed)
    gold = [list(rng.choice(TAGS[:7] if seed % 2 else TAGS, size=rng.integers(1, 12))) for _ in range(20)]
    pred = [[t if rng.random() < 0.6 else str(rng.choice(TAGS)) for t in g] for g in gold]
    ours = entity_scores(gold, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns that "PER", "B" ... are not NE tags: they are here on purpose
        assert ours["entity_precision"] == pytest.approx(seqeval.precision_score(gold, pred))
        assert ours["entity_recall"] == pytest.approx(seqeval.recall_score(gold, pred))
        assert ours["entity_f1"] == pytest.approx(seqeval.f1_score(gold, pred))


LABELS = ["B-LOC", "I-LOC", "B-PER", "O"]


def test_tagger_metrics_equal_seqeval_on_the_pipelines_predictions(tmp_path, bert):
    seqeval = pytest.importorskip("seqeval.metrics", reason="seqeval (the test oracle) is not installed")
    from plmlab.evaluate.labels import read_token_classification

    _, tok = bert
    m = model("bert-tiny", tok, head="none", classifier="token", label_names=LABELS, pair_head=False)
    rng = np.random.default_rng(0)
    path = tmp_path / "tags.jsonl"
    words = " ".join(TEXTS).split()
    rows = [{"tokens": list(rng.choice(words, size=6)), "labels": list(rng.choice(LABELS, size=6))} for _ in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate_token_classification(m, tok, read_token_classification(str(path)))
    gold, pred = [r["labels"] for r in rows], [i["predicted"] for i in result.items]
    assert result.metrics["entity_f1"] == pytest.approx(seqeval.f1_score(gold, pred))
    assert result.metrics["entity_precision"] == pytest.approx(seqeval.precision_score(gold, pred))
    assert result.metrics["token_accuracy"] == pytest.approx(np.mean([a == b for g, p in zip(gold, pred)
                                                                      for a, b in zip(g, p)]))


def test_classifier_accuracy_macro_f1_and_confusion_matrix(tmp_path, bert):
    from plmlab.evaluate.labels import read_classification

    _, tok = bert
    m = model("bert-tiny", tok, head="none", classifier="sequence", label_names=["neg", "pos"], pooler=True,
              pair_head=False)
    path = tmp_path / "dev.csv"
    path.write_text("text,label\n" + "".join(f"{t},{'pos' if i % 2 else 'neg'}\n" for i, t in
                                             enumerate(["good film", "bad plot", "a fine story", "sad actors", "nice"])))
    result = evaluate_classification(m, tok, read_classification(str(path)))
    gold = [i["label"] for i in result.items]
    pred = [i["predicted"] for i in result.items]
    matrix = result.metrics["confusion_matrix"]
    assert matrix["labels"] == ["neg", "pos"]
    assert [[sum(g == a and p == b for g, p in zip(gold, pred)) for b in ("neg", "pos")] for a in ("neg", "pos")] \
        == matrix["matrix"]
    assert result.metrics["accuracy"] == pytest.approx(np.mean([g == p for g, p in zip(gold, pred)]))
    f1 = [2 * sum(g == c == p for g, p in zip(gold, pred)) / (gold.count(c) + pred.count(c))
          for c in ("neg", "pos") if gold.count(c) + pred.count(c)]
    assert result.metrics["macro_f1"] == pytest.approx(np.mean(f1))


def test_validation_documents_are_the_pretraining_validation_split(tmp_path):
    from plmlab.data import build_token_data

    rng = np.random.default_rng(0)
    words = " ".join(TEXTS).split()
    docs = [[" ".join(rng.choice(words, size=5)) + "." for _ in range(3)] for _ in range(60)]
    docs[4] = ["   "]  # a blank document takes no part in the split
    tok = tokenizer("gpt2")
    _, val = build_token_data(docs, tok, cache_dir=tmp_path)
    cleaned = [[s for s in d if s.strip()] for d in docs]
    assert validation_documents(docs) == [cleaned[i] for i in val.doc_index]


def test_document_texts_reads_files_and_defaults_to_builtin_validation(tmp_path):
    from plmlab.data import builtin_documents

    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    assert document_texts(str(path)) == TEXTS
    val = document_texts()
    assert val == [" ".join(d) for d in validation_documents(builtin_documents())]
    assert 0 < len(val) < len(builtin_documents()) / 10
