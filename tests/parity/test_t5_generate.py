"""T5 generation against transformers' `generate`: greedy and beam search give the same tokens
for tiny random v1.0 / v1.1 models (padded batches, EOS, length penalty, early stopping,
no-repeat n-grams); the cached and uncached decoders agree."""

import pytest
import torch

import plmlab

transformers = pytest.importorskip("transformers")
from transformers import T5Config, T5ForConditionalGeneration  # noqa: E402

V = 61


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return {v: _build(v, tmp_path_factory.mktemp(v)) for v in ("v1.0", "v1.1")}


def _build(version: str, tmp_path):
    """A tiny random HF T5 and the same model loaded by plmlab."""
    kw = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4, decoder_start_token_id=0,
              relative_attention_num_buckets=8, relative_attention_max_distance=16)
    if version == "v1.1":
        kw.update(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(T5Config(**kw)).eval()
    if version == "v1.1":
        hf.lm_head.weight = torch.nn.Parameter(torch.randn(V, 32))
    hf.save_pretrained(tmp_path / "hf")
    return hf, plmlab.load_pretrained(tmp_path / "hf")


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(2, V, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding, as T5 tokenizers pad
    mask[2, 4:] = 0
    ids[mask == 0] = 0
    return ids, mask


def _hf_generate(hf, ids, mask, eos=1, **kw):
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=0, eos_token_id=eos, **kw)
    return out[:, 1:]  # drop the decoder start token


def _eos(ours, ids, mask, pick: bool, **kw) -> int:
    """EOS 1, or (pick) a token that greedy decoding reaches in mid-sequence, so that rows and
    beams really end early: random tiny models rarely produce token 1."""
    if not pick:
        return 1
    free = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None, **kw)  # never ends
    return int(free[1, 3])


def _same(ours, ref):
    """plmlab stops when every row has ended, as transformers does; both pad finished rows."""
    assert ours.shape == ref.shape, (ours, ref)
    assert torch.equal(ours, ref), (ours, ref)


def _same_until_eos(ours, ref, eos):
    """Beam search: the same tokens up to and including each row's EOS. What fills a row after
    its EOS differs: transformers 5 (generation/utils.py, `_beam_search`:
    `output_fill_value = pad_token_id or eos_token_id[0]`) fills with EOS when the pad id is 0,
    as T5's is, because tensor(0) is falsy; plmlab fills with the pad id as greedy does."""
    assert ours.shape == ref.shape, (ours, ref)
    for a, b in zip(ours.tolist(), ref.tolist()):
        end = b.index(eos) + 1 if eos in b else len(b)
        assert a[:end] == b[:end], (ours, ref)
        assert all(t == 0 for t in a[end:]) and all(t in (0, eos) for t in b[end:])


@pytest.mark.parametrize("version, pick", [("v1.0", False), ("v1.1", False), ("v1.0", True), ("v1.1", True)])
def test_greedy_equals_transformers(version, pick, models):
    hf, ours = models[version]
    ids, mask = _batch()
    eos = _eos(ours, ids, mask, pick)
    ref = _hf_generate(hf, ids, mask, eos=eos, max_new_tokens=12, num_beams=1)
    out = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos)
    _same(out, ref)
    if pick:
        assert int((ref == eos).any(dim=1).sum()) >= 1 and bool((ref == 0).any())  # ended and padded
    _same(plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, use_cache=False), ref)


@pytest.mark.parametrize("version, pick, kw", [
    ("v1.0", False, dict(num_beams=3)),
    ("v1.1", True, dict(num_beams=4, length_penalty=0.6, early_stopping=True)),
    ("v1.0", True, dict(num_beams=3, length_penalty=2.0, early_stopping=False)),
    ("v1.1", False, dict(num_beams=3, no_repeat_ngram_size=2)),
    ("v1.1", True, dict(num_beams=2, repetition_penalty=1.3, early_stopping="never")),
])
def test_beam_search_equals_transformers(version, pick, kw, models):
    hf, ours = models[version]
    ids, mask = _batch()
    eos = _eos(ours, ids, mask, pick, **kw)
    ref = _hf_generate(hf, ids, mask, eos=eos, max_new_tokens=10, **kw)
    out = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, **kw)
    _same_until_eos(out, ref, eos)
    if pick and kw.get("length_penalty", 1.0) <= 1.0:  # a penalty > 1 may favour longer unfinished beams
        assert bool((ref == eos).any())  # some hypothesis really ended


def test_greedy_no_repeat_and_repetition_penalty(models):
    hf, ours = models["v1.0"]
    ids, mask = _batch()
    kw = dict(no_repeat_ngram_size=2, repetition_penalty=1.5)
    ref = _hf_generate(hf, ids, mask, max_new_tokens=12, **kw)
    _same(plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=12, **kw), ref)
