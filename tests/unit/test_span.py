"""T5 span corruption: T5's length arithmetic, exact round trips, noise and span statistics over
many seeds, the trainer-facing objective on token data, the multi-task mixture, the CLI view."""

import json
import math

import numpy as np
import pytest

from plmlab.data.shards import TokenData
from plmlab.errors import PlmlabError
from plmlab.objectives import example_rng, get_objective
from plmlab.objectives.mixture import Mixture, encode_text2text, read_text2text
from plmlab.objectives.span import (
    SpanCorruption, compute_input_and_target_lengths, corrupt, corrupted_lengths, random_segmentation,
    random_spans_noise_mask, restore, span_starts,
)
from plmlab.tokenizers import train_tokenizer
from test_generation import run_cli  # `plmlab ...` in process (a subprocess adds only its start-up)

TEXTS = ["The quick brown fox jumps over the lazy dog near the river bank.",
         "A function returns a value to its caller, unless it raises an exception first.",
         "Lists, tuples and dictionaries are built-in container types of the language."] * 20


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, "t5", vocab_size=300)


# --- lengths ----------------------------------------------------------------------------------------
def _t5_helper(inputs_length, noise_density, mean_span):
    """T5's random_spans_helper, transcribed independently (extra tokens per span = 1)."""
    def lengths(tokens_length):
        noise = int(round(tokens_length * noise_density))
        spans = int(round(noise / mean_span))
        return tokens_length - noise + spans + 1, noise + spans + 1
    best = max(t for t in range(1, 4 * inputs_length) if lengths(t)[0] <= inputs_length)
    return best, lengths(best)[1]


def test_lengths_as_t5_computes_them():
    assert compute_input_and_target_lengths(512, 0.15, 3) == (568, 114)
    assert corrupted_lengths(568, 0.15, 3) == (512, 114)
    for inputs in (16, 64, 128, 200, 512, 1024):
        for density, span in ((0.15, 3.0), (0.3, 3.0), (0.15, 8.0), (0.25, 2.5)):
            assert compute_input_and_target_lengths(inputs, density, span) == _t5_helper(inputs, density, span)


def test_full_windows_corrupt_to_exactly_the_computed_lengths(tok):
    obj = SpanCorruption(tok, 512)
    for seed in range(30):
        ex = obj.corrupt_ids(np.arange(3, 3 + 568), np.random.default_rng(seed))
        assert (len(ex["input_ids"]), len(ex["labels"])) == (512, 114)


# --- the mask ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length", [2, 3, 7, 20, 100, 568])
def test_mask_counts_are_exact(length):
    n = min(max(round(length * 0.15), 1), length - 1)
    k = max(1, round(n / 3))
    for seed in range(50):
        mask = random_spans_noise_mask(length, 0.15, 3.0, np.random.default_rng(seed))
        assert mask.shape == (length,) and int(mask.sum()) == n
        assert int(span_starts(mask).sum()) == k  # k noise spans
        assert int(span_starts(~mask).sum()) == k and not mask[0]  # k kept segments, kept first


def test_segmentation_is_a_uniform_composition():
    """Uniform compositions of n into k parts: each part is j with P = C(n-j-1, k-2) / C(n-1, k-1)."""
    n, k, trials = 10, 3, 6000
    rng = np.random.default_rng(1)
    first = np.array([random_segmentation(n, k, rng)[0] for _ in range(trials)])
    for j in range(1, n - k + 2):
        p = math.comb(n - j - 1, k - 2) / math.comb(n - 1, k - 1)
        sd = math.sqrt(trials * p * (1 - p))
        assert abs((first == j).sum() - trials * p) < 4.5 * sd + 1, j


def test_span_length_and_position_statistics_over_seeds():
    L, n, k, seeds = 568, 85, 28, 400
    lengths, noise_at = [], np.zeros(L)
    for seed in range(seeds):
        mask = random_spans_noise_mask(L, 0.15, 3.0, np.random.default_rng([7, seed]))
        noise_at += mask
        starts = np.flatnonzero(span_starts(mask))
        ends = np.flatnonzero(mask & ~np.append(mask[1:], False)) + 1  # one past each span
        lengths += list(ends - starts)
    lengths = np.array(lengths)
    assert len(lengths) == seeds * k and lengths.mean() == pytest.approx(n / k)  # exact mean
    # each span of a uniform composition has P(len = 1) = (k - 1) / (n - 1)
    p1 = (k - 1) / (n - 1)
    sd = math.sqrt(len(lengths) * p1 * (1 - p1))
    assert abs((lengths == 1).sum() - len(lengths) * p1) < 4.5 * sd
    # away from the edges every position is noise with probability ~ n / L
    middle = noise_at[50:-50] / seeds
    p = n / L
    assert abs(middle.mean() - p) < 0.01
    assert np.abs(middle - p).max() < 4.5 * math.sqrt(p * (1 - p) / seeds) + 0.02


# --- corrupt / restore ------------------------------------------------------------------------------
def test_round_trip_and_layout(tok):
    sentinels, eos = tok.sentinel_ids, tok.eos_id
    assert sentinels[0] == len(tok) - 1 and sentinels[1] == len(tok) - 2  # counting down from the top
    rng = np.random.default_rng(3)
    for trial in range(300):
        length = int(rng.integers(2, 300))
        ids = rng.integers(1, min(sentinels), size=length)  # EOS may occur inside
        mask = random_spans_noise_mask(length, float(rng.choice([0.15, 0.3, 0.5])), 3.0, rng)
        inputs, targets = corrupt(ids, mask, sentinels, eos)
        assert restore(inputs.tolist(), targets.tolist(), sentinels, eos) == ids.tolist()
        k = int(span_starts(mask).sum())
        assert inputs[-1] == eos and targets[-1] == eos
        assert [t for t in inputs if t in sentinels] == sentinels[:k] == [t for t in targets if t in sentinels]
        assert targets[0] == sentinels[0] and inputs[-2] == sentinels[k - 1]  # noise never comes first


def test_hand_example():
    ids = np.array([10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    mask = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 1], dtype=bool)
    inputs, targets = corrupt(ids, mask, [99, 98, 97], 1)
    assert inputs.tolist() == [10, 11, 99, 14, 15, 16, 98, 1]
    assert targets.tolist() == [99, 12, 13, 98, 17, 18, 19, 1]


# --- the objective on token data --------------------------------------------------------------------
def _token_data(tok):
    docs = [tok.encode(t, add_special_tokens=False) for t in TEXTS[:12]]
    offsets = np.cumsum([0] + [len(d) for d in docs])
    tokens = np.concatenate(docs).astype(np.uint16)
    return TokenData(tokens, offsets, offsets.copy(), np.arange(len(docs) + 1), np.arange(len(docs)))


def test_objective_examples_rebuild_the_packed_stream(tok):
    data = _token_data(tok)
    obj = get_objective("span-corruption")(tok, 32)
    raw, target_len = compute_input_and_target_lengths(32)
    assert (obj.raw_length, obj.target_length) == (raw, target_len)
    stream = []
    for d in range(data.n_docs):
        stream += data.document(d).tolist() + [tok.eos_id]
    n = obj.num_examples(data)
    assert n == len(stream) // raw
    for i in range(n):
        ex = obj.example(data, i, example_rng(0, 0, i))
        assert len(ex["input_ids"]) == 32 and len(ex["labels"]) == target_len
        assert restore(ex["input_ids"].tolist(), ex["labels"].tolist(), tok.sentinel_ids, tok.eos_id) == \
            stream[i * raw:(i + 1) * raw]
        again = obj.example(data, i, example_rng(0, 0, i))
        assert all(np.array_equal(ex[k], again[k]) for k in ex)  # a pure function of (seed, epoch, index)
    batch = obj.collate([obj.example(data, i, example_rng(0, 0, i)) for i in range(3)])
    assert set(batch) == {"input_ids", "attention_mask", "labels"} and batch["labels"].shape == (3, target_len)


def test_trains_a_tiny_t5_step(tok):

    import plmlab

    data = _token_data(tok)
    obj = SpanCorruption(tok, 32)
    model = plmlab.build_model("t5-tiny", vocab_size=len(tok))
    batch = obj.collate([obj.example(data, i, example_rng(0, 0, i)) for i in range(4)])
    loss = model(**batch).loss
    value = float(loss.detach())
    assert math.isfinite(value) and abs(value - math.log(len(tok))) < 1.0
    loss.backward()
    assert model.embed.tokens.weight.grad is not None


def test_bad_inputs(tok):
    no_sentinels = train_tokenizer(TEXTS, "bert", vocab_size=200)
    with pytest.raises(PlmlabError, match="sentinel"):
        SpanCorruption(no_sentinels, 64)
    obj = SpanCorruption(tok, 16)
    long = list(range(3, 3 + obj.raw_length + 1))
    with pytest.raises(PlmlabError, match="at most"):
        obj.from_ids(long, np.random.default_rng(0))
    cut = SpanCorruption(tok, 16, truncate=True).from_ids(long, np.random.default_rng(0))
    assert len(cut["input_ids"]) == 16
    few = train_tokenizer(TEXTS, "t5", vocab_size=300, extra_ids=2)
    with pytest.raises(PlmlabError, match="only 2 sentinels"):
        SpanCorruption(few, 512)  # 28 spans per example: refused before training starts
    with pytest.raises(PlmlabError, match="sentinels"):
        corrupt(np.arange(3, 12), np.array([0, 1, 0, 1, 0, 1, 0, 1, 0], dtype=bool), few.sentinel_ids, 1)
    with pytest.raises(PlmlabError, match="noise_density"):
        SpanCorruption(tok, 64, noise_density=1.5)


# --- the mixture ------------------------------------------------------------------------------------
def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


def test_mixture_rates_and_prefixes(tok, tmp_path):
    data = _token_data(tok)
    a = _jsonl(tmp_path / "sst2.jsonl", [{"input": "a fine film", "target": "positive"},
                                          {"input": "a dull film", "target": "negative"}])
    b = _jsonl(tmp_path / "copy.jsonl", [{"input": "the dog", "target": "the dog"}])
    obj = Mixture(tok, 64, tasks=[{"path": a, "rate": 2.0, "prefix": "sst2 sentence: "},
                                  {"path": b, "rate": 1.0, "prefix": "copy: "}], span_rate=1.0)
    assert obj.rates.tolist() == [0.25, 0.5, 0.25]
    prefix_a = tok.encode("sst2 sentence: a", add_special_tokens=False)[:3]
    counts, trials = np.zeros(3), 2000
    for i in range(trials):
        ex = obj.example(data, i, example_rng(5, 0, i))
        ids = ex["input_ids"].tolist()
        if any(t in tok.sentinel_ids for t in ids):
            counts[0] += 1
        elif ids[:3] == prefix_a:
            counts[1] += 1
            assert tok.decode(ex["labels"]) in ("positive", "negative") and ex["labels"][-1] == tok.eos_id
        else:
            counts[2] += 1
            assert tok.decode(ids).startswith("copy")
    for c, p in zip(counts, obj.rates):
        assert abs(c - trials * p) < 4.5 * math.sqrt(trials * p * (1 - p))
    assert obj.num_examples(data) == SpanCorruption(tok, 64).num_examples(data) + 3


def test_text2text_data_errors(tok, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "x", "target": "y"}\n{"input": "  ", "target": "y"}\n')
    with pytest.raises(PlmlabError, match=r"bad.jsonl:2: empty input"):
        read_text2text(bad)
    bad.write_text('{"input": "x"}\n')
    with pytest.raises(PlmlabError, match='"target"'):
        read_text2text(bad)
    bad.write_text("not json\n")
    with pytest.raises(PlmlabError, match="invalid JSON"):
        read_text2text(bad)
    pairs = [("a long input " * 20, "short")]
    with pytest.raises(PlmlabError, match="example 1: input has"):
        encode_text2text(tok, pairs, "", 16, 8)
    ex = encode_text2text(tok, pairs, "", 16, 8, truncate=True)[0]
    assert len(ex["input_ids"]) == 16 and ex["input_ids"][-1] == tok.eos_id


# --- CLI ------------------------------------------------------------------------------------------
def test_objective_cli_json(tok, tmp_path):
    tok.save(tmp_path / "tok")
    text = "The quick brown fox jumps over the lazy dog near the river bank."
    code, stdout, stderr = run_cli(["objective", "span-corruption", "--text", text, "--tokenizer", str(tmp_path / "tok"),
                                    "--seed", "3", "--json"])
    assert code == 0, stderr
    out = json.loads(stdout)
    assert restore(out["input_ids"], out["labels"], tok.sentinel_ids, tok.eos_id) == out["original_ids"]
    assert out["sentinel_ids"] == tok.sentinel_ids[:len(out["sentinel_ids"])] and out["eos_token_id"] == 1
    assert out["tokens"][-1] == "</s>" and out["raw_length"] == 568 and out["targets_length"] == 114
    code, _, stderr = run_cli(["objective", "span-corruption", "--text", text * 3, "--tokenizer", str(tmp_path / "tok"),
                               "--seq-len", "8"])
    assert code == 2 and stderr.startswith("plmlab: error:") and stderr.count("\n") == 1
