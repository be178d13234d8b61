"""Decoding: pure logit filters, KV-cache correctness, padding, sampling, EOS, stop strings,
streaming, parity with `transformers` generate, and the `plmlab generate` command."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

import plmlab
from plmlab import Config, PlmlabError
from plmlab.generation import (
    FILTERS, StopStrings, TextStreamer, build_pipeline, generate, min_p, no_repeat_ngram, repetition_penalty,
    temperature, top_k, top_p,
)
from plmlab.presets import PRESETS

NEG = float("-inf")


# --- filters, by hand ------------------------------------------------------------------------
def test_temperature_divides():
    assert torch.equal(temperature(torch.tensor([[1.0, 2.0, -4.0]]), 2.0), torch.tensor([[0.5, 1.0, -2.0]]))


def test_top_k_keeps_k_best_and_ties():
    s = torch.tensor([[1.0, 4.0, 2.0, 3.0, 0.0]])
    assert torch.equal(top_k(s, 2), torch.tensor([[NEG, 4.0, NEG, 3.0, NEG]]))
    ties = torch.tensor([[1.0, 3.0, 2.0, 3.0, 0.0]])
    assert torch.equal(top_k(ties, 1), torch.tensor([[NEG, 3.0, NEG, 3.0, NEG]]))
    assert torch.equal(top_k(s, 1, min_keep=2), top_k(s, 2))
    assert torch.equal(top_k(s, 99), s)  # k past the vocabulary keeps everything


def test_top_p_smallest_nucleus():
    s = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    # mass removed from the worst end while it stays <= 1 - p: 0.05, 0.15 (0.2 <= 0.25)
    assert torch.isinf(top_p(s, 0.75)).tolist() == [[False, False, True, True]]
    assert torch.isinf(top_p(s, 0.4)).tolist() == [[False, True, True, True]]
    assert torch.equal(top_p(s, 1.0), s)


def test_top_p_keeps_at_least_one_token():
    s = torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.25, 0.25, 0.25, 0.25]]).log()
    out = top_p(s, 1e-9)  # 1 - p rounds to 1: every cumulative mass qualifies for removal
    assert (~torch.isinf(out)).sum(dim=1).tolist() == [1, 1]
    assert not torch.isinf(out[0, 0])
    assert (~torch.isinf(top_p(s, 1e-9, min_keep=3))).sum(dim=1).tolist() == [3, 3]


def test_min_p_relative_threshold():
    s = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    assert torch.isinf(min_p(s, 0.2)).tolist() == [[False, False, False, True]]  # below 0.2 * 0.5
    assert torch.isinf(min_p(s, 1.0)).tolist() == [[False, True, True, True]]
    assert torch.isinf(min_p(s, 1.0, min_keep=2)).tolist() == [[False, False, True, True]]


def test_repetition_penalty_signs():
    s = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    out = repetition_penalty(s, torch.tensor([[0, 1, 1]]), 2.0)
    assert torch.equal(out, torch.tensor([[1.0, -4.0, 1.0, 0.5]]))  # positive / 2, negative * 2
    # penalty < 1 rewards instead; padding (valid False) is not "present"
    out = repetition_penalty(s, torch.tensor([[2, 0]]), 0.5, valid=torch.tensor([[False, True]]))
    assert torch.equal(out, torch.tensor([[4.0, -2.0, 1.0, 0.5]]))


def test_no_repeat_ngram_bans_completions():
    s = torch.zeros(1, 5)
    assert torch.isinf(no_repeat_ngram(s, torch.tensor([[1, 2, 3, 1, 2]]), 3))[0].tolist() == \
        [False, False, False, True, False]  # (1, 2) was followed by 3
    assert torch.isinf(no_repeat_ngram(s, torch.tensor([[1, 2, 1]]), 2))[0].tolist() == \
        [False, False, True, False, False]  # (1,) was followed by 2
    assert torch.equal(no_repeat_ngram(s, torch.tensor([[1, 2]]), 3), s)  # no complete 3-gram yet
    assert torch.isinf(no_repeat_ngram(s, torch.tensor([[4, 2, 4]]), 1))[0].tolist() == \
        [False, False, True, False, True]  # unigrams: everything seen is banned
    # windows touching left padding never match: pad 1 followed by 2 is not an n-gram
    padded = torch.tensor([[1, 2, 1]])
    assert torch.equal(no_repeat_ngram(s, padded, 2, valid=torch.tensor([[False, True, True]])), s)


def test_pipeline_order_follows_transformers():
    names = [n for n, _ in build_pipeline(do_sample=True, temperature=0.7, top_k=5, top_p=0.9, min_p=0.1,
                                          repetition_penalty=1.2, no_repeat_ngram_size=2)]
    assert names == ["repetition_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p", "min_p"]
    greedy = [n for n, _ in build_pipeline(do_sample=False, temperature=0.7, top_k=5, repetition_penalty=1.2)]
    assert greedy == ["repetition_penalty"]  # sampling filters never change the argmax path
    assert set(FILTERS) == {"repetition_penalty", "no_repeat_ngram", "temperature", "top_k", "top_p", "min_p"}


def test_bad_filter_values_are_one_line_errors():
    nan, inf = float("nan"), float("inf")
    for kw in (dict(top_p=0.0), dict(top_p=1.5), dict(min_p=-0.1), dict(top_k=-1), dict(temperature=-1.0),
               dict(repetition_penalty=0.0), dict(no_repeat_ngram_size=-2), dict(temperature=nan),
               dict(temperature=inf), dict(top_p=nan), dict(min_p=nan), dict(repetition_penalty=nan)):
        with pytest.raises(PlmlabError):
            build_pipeline(do_sample=True, **kw)
    model = plmlab.build_model("gpt-tiny")
    for bad in (nan, inf):  # nan passes every `<` check: refused by name
        with pytest.raises(PlmlabError, match="length_penalty must be a finite number"):
            generate(model, [[1, 2]], num_beams=2, length_penalty=bad)


def test_filters_match_transformers_processors():
    lp = pytest.importorskip("transformers.generation.logits_process")
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(3, 40, generator=g) * 3
    tokens = torch.randint(0, 40, (3, 12), generator=g)
    cases = [
        (lp.TemperatureLogitsWarper(0.7), temperature(scores, 0.7)),
        (lp.TopKLogitsWarper(7), top_k(scores, 7)),
        (lp.TopPLogitsWarper(0.8), top_p(scores, 0.8)),
        (lp.TopPLogitsWarper(0.8, min_tokens_to_keep=3), top_p(scores, 0.8, min_keep=3)),
        (lp.MinPLogitsWarper(0.3), min_p(scores, 0.3)),
        (lp.RepetitionPenaltyLogitsProcessor(1.7), repetition_penalty(scores, tokens, 1.7)),
        (lp.NoRepeatNGramLogitsProcessor(2), no_repeat_ngram(scores, tokens, 2)),
        (lp.NoRepeatNGramLogitsProcessor(1), no_repeat_ngram(scores, tokens, 1)),
    ]
    for proc, ours in cases:
        assert torch.equal(proc(tokens, scores.clone()), ours), type(proc).__name__


# --- decoding with plmlab models ------------------------------------------------------------
@pytest.fixture(scope="module")
def models():
    out = {}
    for name in ("gpt-tiny", "llama-tiny") + (("t5-tiny",) if "t5-tiny" in PRESETS else ()):
        torch.manual_seed(0)
        overrides = {"init_std": 0.2}  # peaky distributions: no near-ties between the top tokens
        out[name] = plmlab.build_model(name, **overrides).eval()
    return out


def _prompts(vocab: int, lengths=(7, 4, 9), seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny", "t5-tiny"])
def test_cached_equals_uncached(models, name):
    if name not in models:
        pytest.skip(f"{name} preset not available")
    m = models[name]
    ids = torch.tensor(_prompts(m.config.vocab_size, (6, 6)))
    for kw in (dict(), dict(num_beams=3, no_repeat_ngram_size=2)):
        cached = generate(m, ids, max_new_tokens=12, eos_token_id=None, **kw)
        uncached = generate(m, ids, max_new_tokens=12, eos_token_id=None, use_cache=False, **kw)
        assert cached.shape == (2, 12)
        assert torch.equal(cached, uncached)


@pytest.mark.parametrize("name", ["gpt-tiny", "llama-tiny"])
def test_left_padded_batch_equals_rows_alone(models, name):
    m = models[name]
    rows = _prompts(m.config.vocab_size)
    for kw in (dict(), dict(num_beams=2, repetition_penalty=1.3), dict(no_repeat_ngram_size=2)):
        batch = generate(m, rows, max_new_tokens=8, eos_token_id=None, **kw)
        for i, r in enumerate(rows):
            assert torch.equal(batch[i], generate(m, [r], max_new_tokens=8, eos_token_id=None, **kw)[0]), (i, kw)
    # a right-padded tensor with its mask is re-laid as left padding
    T = max(map(len, rows))
    ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (T - len(r)) for r in rows])
    assert torch.equal(generate(m, ids, attention_mask=mask, max_new_tokens=8, eos_token_id=None),
                       generate(m, rows, max_new_tokens=8, eos_token_id=None))


def test_sampling_is_seeded(models):
    m = models["gpt-tiny"]
    ids = torch.tensor(_prompts(m.config.vocab_size, (5, 5)))
    kw = dict(max_new_tokens=16, do_sample=True, temperature=1.5, top_k=50, top_p=0.95, eos_token_id=None)
    a = generate(m, ids, seed=7, **kw)
    assert torch.equal(a, generate(m, ids, seed=7, **kw))
    assert torch.equal(a, generate(m, ids, generator=torch.Generator().manual_seed(7), **kw))
    assert not torch.equal(a, generate(m, ids, seed=8, **kw))
    beam_kw = dict(max_new_tokens=8, do_sample=True, num_beams=3, top_k=20, eos_token_id=None)
    assert torch.equal(generate(m, ids, seed=1, **beam_kw), generate(m, ids, seed=1, **beam_kw))  # beam sampling
    # top_k=1 sampling is greedy; temperature 0 means greedy
    greedy = generate(m, ids, max_new_tokens=16, eos_token_id=None)
    assert torch.equal(greedy, generate(m, ids, max_new_tokens=16, do_sample=True, top_k=1, seed=3, eos_token_id=None))
    assert torch.equal(greedy, generate(m, ids, max_new_tokens=16, do_sample=True, temperature=0, eos_token_id=None))


def test_eos_none_runs_to_max_new_tokens_and_eos_pads(models):
    m = models["llama-tiny"]
    ids = torch.tensor(_prompts(m.config.vocab_size, (5, 5)))
    free = generate(m, ids, max_new_tokens=10, eos_token_id=None)
    assert free.shape == (2, 10)
    eos = int(free[0, 2])  # a token row 0 produces at step 2
    assert eos not in free[0, :2].tolist()
    out = generate(m, ids, max_new_tokens=10, eos_token_id=eos, pad_token_id=-1)
    assert out[0, :3].tolist() == free[0, :3].tolist()
    assert (out[0, 3:] == -1).all()  # finished row gets padding
    row1 = free[1].tolist()
    if eos in row1:  # row 1 stops too, and the output ends when both have
        k = row1.index(eos)
        assert out.shape[1] == max(3, k + 1)
    else:
        assert torch.equal(out[1], free[1])
    # every row finished early: the output is shorter than max_new_tokens
    both = generate(m, ids, max_new_tokens=10, eos_token_id=[eos, int(free[1, 1])], pad_token_id=-1)
    assert both.shape[1] <= 3


class CharTokenizer:
    """id i <-> letter 'a' + i % 26 (a stand-in with a decode method)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(97 + int(i) % 26) for i in ids)


def test_stop_strings_end_a_row(models):
    m = models["gpt-tiny"]
    ids = torch.tensor(_prompts(m.config.vocab_size, (5, 5)))
    free = generate(m, ids, max_new_tokens=10, eos_token_id=None)
    tok = CharTokenizer()
    text0 = tok.decode(free[0].tolist())
    stop = text0[3:5]  # completed by the token at step 4 (or earlier)
    out = generate(m, ids, max_new_tokens=10, eos_token_id=None, pad_token_id=-1, stop=[stop], tokenizer=tok)
    end = next(n for n in range(1, 11) if stop in text0[:n])
    assert out[0, :end].tolist() == free[0, :end].tolist()
    assert (out[0, end:] == -1).all()
    with pytest.raises(PlmlabError, match="tokenizer"):
        generate(m, ids, stop=["x"])
    # beam search honours stop strings too (a hypothesis that contains one is finished)
    beams = generate(m, ids, max_new_tokens=10, eos_token_id=None, num_beams=2, stop=[stop], tokenizer=tok)
    assert beams.shape[0] == 2


def test_streamer_receives_every_step(models):
    m = models["gpt-tiny"]
    ids = torch.tensor(_prompts(m.config.vocab_size, (5, 5)))
    seen = []
    out = generate(m, ids, max_new_tokens=6, eos_token_id=None, streamer=lambda t: seen.append(t.clone()))
    assert torch.equal(torch.stack(seen, dim=1), out)
    with pytest.raises(PlmlabError, match="beam"):
        generate(m, ids, num_beams=2, streamer=lambda t: None)


class ByteTokenizer:
    """id = one UTF-8 byte: decoding a prefix can end inside a character, as byte-level BPE can."""

    def decode(self, ids, skip_special_tokens=True):
        return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def _stream(text: str, stop=(), end_ids=()):
    written = []
    s = TextStreamer(ByteTokenizer(), written.append, stop=stop, end_ids=end_ids)
    for b in text.encode():
        s.put(torch.tensor([b]))
    s.end()
    return written, s


def test_text_streamer_waits_for_whole_characters():
    written, s = _stream("héllo 你好 ok")
    assert "".join(written) == "héllo 你好 ok" == s.text
    assert all("\ufffd" not in w for w in written)
    assert len(written) > 3  # it streamed, not one write at the end


def test_text_streamer_never_prints_a_stop_string():
    written, _ = _stream("hello world, bye", stop=["wor", "zzz"])
    assert "".join(written) == "hello "
    written, _ = _stream("say hi", stop=["hi!"])  # a held-back prefix that never completes
    assert "".join(written) == "say hi"
    written, s = _stream("ab\x00cd", end_ids=[0])  # EOS ends the row
    assert "".join(written) == "ab" and s.done


def test_stop_strings_criterion_skips_eos():
    crit = StopStrings(CharTokenizer(), ["cd"], skip=[25])
    got = crit(torch.tensor([[0, 1, 2, 3], [2, 25, 3, 3], [2, 3, 0, 0]]), torch.tensor([True, True, False]))
    assert got.tolist() == [True, False, False]  # row 1: "c" then EOS; row 2 not checked


def test_glm_decodes_through_the_input_hook():
    # GLM feeds 2-D positions and its own mask (families/glm.py GlmPrefixInputs); the loops stay the same.
    torch.manual_seed(0)
    glm = plmlab.build_model(Config(arch="decoder", vocab_size=64, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                    position="learned-2d", max_positions=32, init_std=0.3)).eval()
    rows = [[1, 2, 3, 4], [5, 6]]
    for kw in (dict(), dict(num_beams=2)):
        cached = generate(glm, rows, max_new_tokens=5, eos_token_id=None, **kw)
        assert torch.equal(cached, generate(glm, rows, max_new_tokens=5, eos_token_id=None, use_cache=False, **kw))
        assert torch.equal(cached[1], generate(glm, [rows[1]], max_new_tokens=5, eos_token_id=None, **kw)[0])


# --- limits and errors ------------------------------------------------------------------------
def test_over_long_prompt_errors_or_truncates_left(models):
    m = models["gpt-tiny"]  # learned positions: 128
    limit = m.config.max_positions
    rows = [[m.config.bos_token_id] + list(range(3, limit + 3)), [5, 6, 7]]
    with pytest.raises(PlmlabError, match="context of 128"):
        generate(m, rows, max_new_tokens=4)
    out = generate(m, rows, max_new_tokens=4, truncate="left", eos_token_id=None)
    assert out.shape == (2, 4)
    kept = [m.config.bos_token_id] + rows[0][-(limit - 4 - 1):]  # leading BOS kept, oldest tokens dropped
    assert torch.equal(out[0], generate(m, [kept], max_new_tokens=4, eos_token_id=None)[0])
    with pytest.raises(PlmlabError, match="max_new_tokens"):
        generate(m, [[5]], max_new_tokens=limit, truncate="left")


def test_unusable_models_and_inputs():
    enc = plmlab.build_model(Config(arch="encoder", vocab_size=64, d_model=16, n_layers=1, n_heads=2, d_ff=32,
                                    head="mlm", max_positions=32))
    with pytest.raises(PlmlabError, match="encoder-only"):
        generate(enc, [[1, 2, 3]])
    dec = plmlab.build_model("gpt-tiny")
    with pytest.raises(PlmlabError, match="empty"):
        generate(dec, [[1, 2], []])
    with pytest.raises(PlmlabError):
        generate(dec, [[1, 2]], num_beams=0)
    assert generate(dec, [[1, 2]], max_new_tokens=0).shape == (1, 0)
    out = generate(dec, [[1, 2]], max_new_tokens=2)
    assert dec.training  # generate restores the mode it found
    dec(out, labels=out).loss.backward()  # the ids are ordinary tensors, usable in a training step


# --- parity with transformers -------------------------------------------------------------------
V = 61
BEAM_CASES = [
    dict(),
    dict(repetition_penalty=1.4),
    dict(no_repeat_ngram_size=2),
    dict(num_beams=3),
    dict(num_beams=3, length_penalty=0.7),
    dict(num_beams=3, early_stopping=True),
    dict(num_beams=3, length_penalty=0.7, early_stopping=True, no_repeat_ngram_size=2),
    dict(num_beams=3, early_stopping="never", length_penalty=1.5, repetition_penalty=1.2),
]


def _hf_models():
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    return {
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                                   initializer_range=0.3)),
        "llama": lambda: LlamaForCausalLM(LlamaConfig(
            vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=64, initializer_range=0.3)),
    }


def _t5_model():
    from transformers import T5Config, T5ForConditionalGeneration

    return T5ForConditionalGeneration(T5Config(
        vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, feed_forward_proj="gated-gelu",
        tie_word_embeddings=False, initializer_factor=3.0, dropout_rate=0.0, decoder_start_token_id=0,
        pad_token_id=0, eos_token_id=1))


def _check_parity(hf, ours, ids, mask, encdec: bool):
    """Greedy and beam search token for token, with EOS that actually ends hypotheses."""
    T = ids.shape[1]

    def theirs(**kw):
        out = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, **kw)
        return out[:, 1:] if encdec else out[:, T:]

    free = theirs(num_beams=3, eos_token_id=None, pad_token_id=7)
    if not encdec:  # plmlab.generate's docstring: cat the prompt in front to get transformers' full sequences
        full = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None)
        new = generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=None)
        assert new.shape[1] == 10 and torch.equal(torch.cat([ids, new], dim=1), full)
    # EOS = the token the beams produce most: hypotheses end at different steps
    eos = int(torch.mode(free.flatten()).values)
    checked_short = False
    for kw in BEAM_CASES:
        for e in (None, eos):
            want = theirs(eos_token_id=e, pad_token_id=7, **kw)
            got = generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=e, pad_token_id=7, **kw)
            assert got.shape == want.shape and torch.equal(got, want), (kw, e, want, got)
            checked_short |= e is not None and bool((want == eos).any())
    assert checked_short  # EOS really occurred in at least one case


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_parity_with_transformers_decoder(family, tmp_path):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = _hf_models()[family]().eval()
    hf.save_pretrained(tmp_path)
    ours = plmlab.load_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, V, (2, 7), generator=g)
    _check_parity(hf, ours, ids, torch.ones_like(ids), encdec=False)
    mask = torch.ones_like(ids)
    mask[1, :3] = 0  # left padding
    _check_parity(hf, ours, ids.masked_fill(mask == 0, 0), mask, encdec=False)


@pytest.mark.skipif("t5-tiny" not in PRESETS, reason="T5 preset not available yet")
def test_parity_with_transformers_t5(tmp_path):
    pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = _t5_model().eval()
    hf.save_pretrained(tmp_path)
    ours = plmlab.load_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, V, (2, 7), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # the encoder takes right padding
    _check_parity(hf, ours, ids, mask, encdec=True)


# --- the command --------------------------------------------------------------------------------
def run_cli(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    """`plmlab ...` in-process: (exit code, stdout, stderr)."""
    from plmlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    try:
        code = main(argv)
    finally:
        sys.stdin, sys.stdout, sys.stderr = old
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def tiny_checkpoint():
    from plmlab.tokenizers import train_tokenizer

    texts = ["The quick brown fox jumps over the lazy dog.", "Hello world, héllo wörld!",
             "Language models predict the next token."] * 10
    tok = train_tokenizer(texts, "gpt2", vocab_size=300)
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, max_positions=32, init_std=0.2).eval()
    return model, tok


@pytest.fixture
def cli_model(tiny_checkpoint, monkeypatch):
    """The command's loader returns the in-memory checkpoint (no checkpoint I/O needed)."""
    from plmlab.cli import generate as gen_cli

    model, tok = tiny_checkpoint
    monkeypatch.setattr(gen_cli, "load", lambda *a: (model, tok))
    return model, tok


def test_cli_stream_batch_and_json_agree(cli_model):
    code, streamed, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "6", "Hello", "--prompt", "The"])
    assert code == 0
    code, batch, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "6", "--no-stream", "Hello",
                              "--prompt", "The"])
    assert code == 0 and streamed == batch
    assert streamed.splitlines()[0].startswith("The") and streamed.splitlines()[1].startswith("Hello")
    code, out, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "6", "--json", "--prompt", "The",
                            "Hello"])
    items = json.loads(out)
    assert [i["prompt"] for i in items] == ["The", "Hello"]
    assert [i["prompt"] + i["text"] for i in items] == batch.splitlines()
    model, tok = cli_model
    for item in items:
        assert 0 < len(item["ids"]) <= 6
        want = generate(model, [tok.encode(item["prompt"])], max_new_tokens=6)[0].tolist()
        assert item["ids"] == want[:len(item["ids"])]


def test_cli_prompts_from_stdin_sampling_and_stop(cli_model):
    code, out, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "5", "--seed", "3", "--top-p", "0.9"],
                           stdin="Hello\n\nThe quick\n")
    assert code == 0 and len(out.splitlines()) == 2
    assert run_cli(["generate", "--model", "X", "--max-new-tokens", "5", "--seed", "3", "--top-p", "0.9", "-"],
                   stdin="Hello\nThe quick\n")[1] == out
    code, full, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "8", "--json", "Hello"])
    text = json.loads(full)[0]["text"]
    if len(text) >= 3:
        stop = text[1:3]
        for extra in ([], ["--json"]):
            code, out, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "8", "--stop", stop, "Hello",
                                    *extra])
            got = json.loads(out)[0]["text"] if extra else out[len("Hello"):-1]
            assert code == 0 and got == text[:text.index(stop)]


def test_cli_over_long_prompt_is_one_line_exit_2(cli_model):
    long = " ".join(["the"] * 60)
    code, out, err = run_cli(["generate", "--model", "X", "--max-new-tokens", "4", long])
    assert code == 2 and out == ""
    assert err.startswith("plmlab: error: ") and err.count("\n") == 1 and "--truncate-left" in err
    code, out, _ = run_cli(["generate", "--model", "X", "--max-new-tokens", "4", "--truncate-left", "--json", long])
    assert code == 0 and len(json.loads(out)[0]["ids"]) <= 4


def test_cli_on_a_saved_checkpoint(tiny_checkpoint, tmp_path):
    model, tok = tiny_checkpoint
    plmlab.save_pretrained(model, tmp_path, tokenizer=tok)
    code, out, err = run_cli(["generate", "--model", str(tmp_path), "--max-new-tokens", "5", "--json",
                              "--num-beams", "2", "Hello"])
    assert code == 0, err
    want = generate(model, [tok.encode("Hello")], max_new_tokens=5, num_beams=2)[0].tolist()
    assert json.loads(out)[0]["ids"] == want[:len(json.loads(out)[0]["ids"])]
    code, _, err = run_cli(["generate", "--model", str(tmp_path / "missing"), "Hello"])
    assert code == 2 and err.startswith("plmlab: error: ")



def test_cli_accepts_a_training_run_directory(tmp_path, capsys):
    """`--model RUN` (a pretrain output) loads RUN/final and its tokenizer, as the README shows."""
    from plmlab.cli import main
    from plmlab.tokenizers import train_tokenizer

    tok = train_tokenizer([f"the cat sat on mat number {i}." for i in range(200)], "gpt2", 300)
    model = plmlab.build_model("gpt-tiny", vocab_size=tok.vocab_size, eos_token_id=tok.eos_id)
    plmlab.save_pretrained(model, tmp_path / "run" / "final", tokenizer=tok)
    assert main(["generate", "--model", str(tmp_path / "run"), "--prompt", "the cat", "--max-new-tokens", "3",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["prompt"] == "the cat"
