"""GLM blank infilling: layout on a hand-worked example, round trips, statistics, the mask in a model."""

import json
import math

import numpy as np
import pytest
import torch

from plmlab import build_model
from plmlab.cli import main as cli_main
from plmlab.data.shards import TokenData
from plmlab.errors import PlmlabError
from plmlab.objectives import get_objective
from plmlab.masks import IGNORE_INDEX
from plmlab.objectives.base import example_rng
from plmlab.objectives.glm import (
    BlankInfilling,
    content_budget,
    place_spans,
    sample_span_lengths,
    span_length_pmf,
)
from plmlab.families.glm import GlmTokens, build_blank_infilling, rebuild_text
from plmlab.tokenizers import train_tokenizer

TEXTS = [
    "The cat sat on the mat. It was warm; the sun was out!",
    "Functions return values. A list holds items: numbers, strings or other lists.",
    "Python reads the file line by line. Each line ends with a newline character.",
] * 20
TOK = GlmTokens(mask=1, smask=2, gmask=3, sop=4, eop=5, cls=6, eos=0)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, "glm", vocab_size=400)


def random_content(rng, n, low=10, high=400):
    return rng.integers(low, high, size=n)


# --- the layout: a hand-worked example ----------------------------------------------------------
def test_hand_worked_example():
    """x1..x6 = 11..16; spans [x3] and [x5 x6]; Part B holds span 2 first (the module docstring)."""
    ex = build_blank_infilling(np.array([11, 12, 13, 14, 15, 16]), [(2, 3), (4, 6)], [1, 1], [1, 0], TOK)
    #                 [CLS] x1  x2  [M] x4 [M] eos | sop x5  x6 | sop x3
    assert ex["input_ids"].tolist() == [6, 11, 12, 1, 14, 1, 0, 4, 15, 16, 4, 13]
    assert ex["labels"].tolist() == [-100] * 7 + [15, 16, 5, 13, 5]
    assert ex["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 5, 6, 5, 5, 5, 3, 3]
    assert ex["position_ids"][1].tolist() == [0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 1, 2]
    expected = np.zeros((12, 12), dtype=int)
    expected[:7, :7] = 1  # Part A: bidirectional, never Part B
    for q in range(7, 12):
        expected[q, : q + 1] = 1  # Part B: all of Part A + causal in Part B
    np.testing.assert_array_equal(ex["attention_mask"], expected)
    assert rebuild_text(ex, TOK) == [11, 12, 13, 14, 15, 16]


# --- span sampling --------------------------------------------------------------------------------
def test_spans_cover_15_percent_fit_and_never_touch():
    pmf = span_length_pmf(3.0, 39)
    for seed in range(300):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 300))
        lengths = sample_span_lengths(n, 0.15, pmf, rng)
        spans = place_spans(lengths, n, rng)
        covered = sum(e - s for s, e in spans)
        assert covered >= 0.15 * n and all(1 <= e - s <= 39 for s, e in spans)
        assert spans[0][0] >= 0 and spans[-1][1] <= n
        assert all(b[0] > a[1] for a, b in zip(spans, spans[1:]))  # at least one token between


def test_span_length_distribution_matches_truncated_poisson():
    """Pooled lengths over many seeds follow Poisson(3) restricted to 1..39 (binomial tolerances)."""
    pmf = span_length_pmf(3.0, 39)
    lengths = []
    for seed in range(1500):
        lengths += sample_span_lengths(400, 0.15, pmf, np.random.default_rng(seed))
    lengths = np.array(lengths)
    N = len(lengths)
    assert lengths.min() >= 1 and lengths.max() <= 39
    counts = np.bincount(lengths, minlength=40)[1:]
    for k in range(8):  # bins with enough mass to test; 4.5 sigma each (Bonferroni over 8 bins)
        sigma = math.sqrt(N * pmf[k] * (1 - pmf[k]))
        assert abs(counts[k] - N * pmf[k]) < 4.5 * sigma, (k + 1, counts[k], N * pmf[k])
    mean = 3 / (1 - math.exp(-3))  # E[X | X >= 1] for Poisson(3); the 1..39 cut changes ~1e-20
    sd = math.sqrt(np.sum(pmf * (np.arange(1, 40) - mean) ** 2))
    assert abs(lengths.mean() - mean) < 4.5 * sd / math.sqrt(N)


def test_placement_is_uniform_over_all_valid_layouts():
    """Lengths (2, 3) in 8 tokens with a gap: every valid placement equally likely (both orders)."""
    n = 8
    valid = {}
    for a in range(n):
        for b in range(n):
            for la, lb in ((2, 3), (3, 2)):
                if a + la < b and b + lb <= n:
                    valid[((a, a + la), (b, b + lb))] = 0
    trials = 6000
    for seed in range(trials):
        spans = tuple(place_spans([2, 3], n, np.random.default_rng(seed)))
        valid[spans] += 1
    expected = trials / len(valid)
    sigma = math.sqrt(expected * (1 - 1 / len(valid)))
    assert all(abs(c - expected) < 4.5 * sigma for c in valid.values()), valid


# --- the objective --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["glm", "glm-smask", "glm-gmask", "glm-mix"])
def test_round_trip_rebuilds_the_text(tokenizer, name):
    obj = get_objective(name)(tokenizer, 128)
    tok = obj.tok
    for seed in range(60):
        rng = np.random.default_rng(seed)
        ids = tokenizer.encode(" ".join(TEXTS[seed % 3: seed % 3 + 2]), add_special_tokens=False)
        ex = obj.from_ids(ids, rng)
        assert rebuild_text(ex, tok) == ids[: obj.budget]
        assert len(ex["input_ids"]) <= 128
        labelled = ex["labels"] != IGNORE_INDEX
        assert labelled.sum() == (ex["position_ids"][1] > 0).sum()  # loss on Part B only


def test_modes_use_their_own_mask_tokens(tokenizer):
    text = tokenizer.encode(" ".join(TEXTS[:3]), add_special_tokens=False)
    n = len(text)
    for name, mask in (("glm", "mask"), ("glm-smask", "smask"), ("glm-gmask", "gmask")):
        obj = get_objective(name)(tokenizer, 256)
        tok = obj.tok
        for seed in range(30):
            ex = obj.from_ids(text, np.random.default_rng(seed))
            info = obj.describe(ex)
            masks = [b["mask_token_id"] for b in info["blanks"]]
            assert set(masks) == {getattr(tok, mask)}
            lengths = [len(b["target"]) - 1 for b in info["blanks"]]
            if mask == "gmask":
                assert len(lengths) == 1 and math.ceil(n / 2) <= lengths[0] <= n
                assert info["part_a"][-2:] == [tok.gmask, tok.eos]  # the span is at the end
            else:
                assert sum(lengths) >= 0.15 * n


def test_smask_blanks_whole_sentences(tokenizer):
    obj = get_objective("glm-smask")(tokenizer, 256)
    text = np.array(tokenizer.encode(" ".join(TEXTS[:3]), add_special_tokens=False))
    bounds = obj.sentence_bounds(text)
    assert len(bounds) >= 5 and bounds[-1][1] == len(text)
    sentences = {tuple(text[a:b]) for a, b in bounds}
    for seed in range(20):
        info = obj.describe(obj.from_ids(text.tolist(), np.random.default_rng(seed)))
        assert all(tuple(b["target"][:-1]) in sentences for b in info["blanks"])


def test_mixture_rates(tokenizer):
    obj = get_objective("glm-mix")(tokenizer, 256)
    np.testing.assert_allclose(obj.rates, [0.5, 0.3, 0.2])
    text = tokenizer.encode(" ".join(TEXTS[:3]), add_special_tokens=False)
    counts = {obj.tok.mask: 0, obj.tok.smask: 0, obj.tok.gmask: 0}
    N = 1200
    for seed in range(N):
        info = obj.describe(obj.from_ids(text, np.random.default_rng(seed)))
        counts[info["blanks"][0]["mask_token_id"]] += 1
    for tok_id, p in ((obj.tok.mask, 0.5), (obj.tok.smask, 0.3), (obj.tok.gmask, 0.2)):
        assert abs(counts[tok_id] - N * p) < 4.5 * math.sqrt(N * p * (1 - p))
    only = BlankInfilling(tokenizer, 256, gmask_rate=0.25)  # the rest goes to [MASK]
    np.testing.assert_allclose(only.rates, [0.75, 0.0, 0.25])


def token_data(docs: list[list[list[int]]]) -> TokenData:
    """TokenData from documents given as lists of sentences of ids."""
    sents = [s for d in docs for s in d]
    tokens = np.array([t for s in sents for t in s], dtype=np.uint16)
    sent_offsets = np.concatenate(([0], np.cumsum([len(s) for s in sents])))
    doc_sents = np.concatenate(([0], np.cumsum([len(d) for d in docs])))
    return TokenData(tokens, sent_offsets[doc_sents], sent_offsets, doc_sents, np.arange(len(docs)))


def test_examples_cover_every_document_in_equal_chunks(tokenizer):
    rng = np.random.default_rng(0)
    docs = [[random_content(rng, int(rng.integers(3, 30))).tolist() for _ in range(int(rng.integers(1, 12)))]
            for _ in range(15)]
    data = token_data(docs)
    obj = get_objective("glm-mix")(tokenizer, 64)
    rebuilt = []
    for i in range(obj.num_examples(data)):
        ex = obj.example(data, i, example_rng(7, 0, i))
        assert len(ex["input_ids"]) <= 64
        rebuilt += rebuild_text(ex, obj.tok)
        again = obj.example(data, i, example_rng(7, 0, i))  # a pure function of (seed, epoch, index)
        assert all(np.array_equal(ex[k], again[k]) for k in ex)
    assert rebuilt == data.tokens.tolist()  # chunks in order rebuild the whole corpus
    assert obj.num_examples(data) == sum(math.ceil(len(sum(d, [])) / obj.budget) for d in docs)


def test_smask_uses_the_corpus_sentence_boundaries(tokenizer):
    rng = np.random.default_rng(1)
    docs = [[random_content(rng, int(rng.integers(2, 9))).tolist() for _ in range(6)] for _ in range(4)]
    data = token_data(docs)
    sentences = {tuple(s) for d in docs for s in d}
    obj = get_objective("glm-smask")(tokenizer, 128)
    for i in range(obj.num_examples(data)):
        info = obj.describe(obj.example(data, i, example_rng(0, 0, i)))
        assert all(tuple(b["target"][:-1]) in sentences for b in info["blanks"])


def test_content_budget_is_tight():
    for seq_len in (8, 64, 128, 512):
        n = content_budget(seq_len, 0.15)
        assert n + 2 + 2 * math.ceil(0.15 * n) <= seq_len < (n + 1) + 2 + 2 * math.ceil(0.15 * (n + 1))


def test_errors(tokenizer):
    plain = train_tokenizer(TEXTS, "gpt2", vocab_size=300)
    with pytest.raises(PlmlabError, match="GLM-style tokenizer"):
        BlankInfilling(plain, 64)
    with pytest.raises(PlmlabError, match="unknown option"):
        BlankInfilling(tokenizer, 64, mask_prob=0.3)
    with pytest.raises(PlmlabError, match="too short"):
        BlankInfilling(tokenizer, 4)
    with pytest.raises(PlmlabError, match="mask_ratio must be in"):
        BlankInfilling(tokenizer, 64, mask_ratio=0.7)
    with pytest.raises(PlmlabError, match="rates must be"):
        BlankInfilling(tokenizer, 64, mask_rate=0.0)


def test_high_mask_ratio_still_fits(tokenizer):
    obj = BlankInfilling(tokenizer, 64, mask_ratio=0.5)
    for seed in range(200):
        rng = np.random.default_rng(seed)
        ids = rng.integers(10, 300, size=int(rng.integers(1, obj.budget + 1))).tolist()
        ex = obj.from_ids(ids, rng)
        assert rebuild_text(ex, obj.tok) == ids and len(ex["input_ids"]) <= 64


# --- the mask inside a model -----------------------------------------------------------------------
def test_collate_and_mask_semantics_in_a_model(tokenizer):
    torch.manual_seed(0)
    model = build_model("glm-tiny", vocab_size=tokenizer.vocab_size).eval()
    obj = get_objective("glm")(tokenizer, 96)
    text = tokenizer.encode(TEXTS[0] + " " + TEXTS[1], add_special_tokens=False)
    examples = [obj.from_ids(text[: 20 + 7 * i], np.random.default_rng(i)) for i in range(3)]
    batch = obj.collate(examples)
    B, T = batch["input_ids"].shape
    assert batch["position_ids"].shape == (B, 2, T) and batch["attention_mask"].shape == (B, T, T)
    model.train()
    out = model(**batch)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    model.eval()

    ex = {k: torch.as_tensor(v)[None] for k, v in examples[2].items()}
    n_a = int((ex["position_ids"][0, 1] == 0).sum())
    base = model(**ex).logits
    changed = dict(ex, input_ids=ex["input_ids"].clone())
    changed["input_ids"][0, -1] = 7  # the last Part B token: nothing before it may change
    after = model(**changed).logits
    torch.testing.assert_close(after[:, :-1], base[:, :-1])
    changed = dict(ex, input_ids=ex["input_ids"].clone())
    changed["input_ids"][0, n_a - 2] = 9  # a late Part A token: early Part A sees it (bidirectional)
    after = model(**changed).logits
    assert not torch.allclose(after[:, 1], base[:, 1])


# --- the CLI view ------------------------------------------------------------------------------------
def test_objective_cli_json_and_ascii_mask(tokenizer, tmp_path, capsys):
    tokenizer.save(tmp_path / "tok")
    args = ["objective", "glm", "--text", TEXTS[0], "--tokenizer", str(tmp_path / "tok"), "--seed", "3"]
    assert cli_main(args + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    n = len(out["input_ids"])
    assert len(out["position_ids"]) == 2 and len(out["position_ids"][0]) == n
    assert np.array(out["attention_mask"]).shape == (n, n)
    assert out["part_a"] + out["part_b"] == out["input_ids"] and out["part_a_length"] == len(out["part_a"])
    assert out["mask_token_id"] == tokenizer.mask_id and out["blanks"]
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "attention (row = query, # = may attend):" in text and "pos2" in text
