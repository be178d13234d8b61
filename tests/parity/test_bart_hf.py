"""BART against transformers on tiny random models: logits both ways (load an HF
BartForConditionalGeneration, save it back and load it in transformers again), greedy and beam
generation identical to transformers' `generate` with the same settings, the bare BartModel,
`plmlab info` on a checkpoint and a saved preset that transformers loads."""

import json

import pytest
import torch

import plmlab
from plmlab.hf import choose_adapter

transformers = pytest.importorskip("transformers")
from test_generation import run_cli  # noqa: E402  (`plmlab ...` in process: a subprocess adds only its start-up)
from transformers import BartConfig, BartForConditionalGeneration, BartModel  # noqa: E402

V = 67
PAD, EOS = 1, 2


def _hf_config(**kw):
    # forced_eos_token_id off: BartConfig's default (2) forces EOS at the length limit, which
    # plmlab's generate does not do; the comparison is of the same settings.
    base = dict(vocab_size=V, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=40,
                dropout=0.0, attention_dropout=0.0, forced_eos_token_id=None, init_std=0.3)
    return BartConfig(**{**base, **kw})


def _randomise(model):
    """Norms and biases away from their 1 / 0 init, so a swapped or dropped one shows."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "layer_norm" in name or "layernorm" in name:
                p.add_(torch.randn_like(p) * 0.3)
        if hasattr(model, "final_logits_bias"):
            model.final_logits_bias.normal_(0, 0.1)
    return model


@pytest.fixture(scope="module", params=[False, True], ids=["unscaled", "scale_embedding"])
def pair(request, tmp_path_factory):
    torch.manual_seed(0)
    hf = _randomise(BartForConditionalGeneration(_hf_config(scale_embedding=request.param)).eval())
    path = tmp_path_factory.mktemp("bart") / "hf"
    hf.save_pretrained(path)
    return hf, plmlab.load_pretrained(path), path


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(4, V, (3, 9), generator=g)
    ids[:, 0], ids[:, -1] = 0, EOS  # <s> ... </s>, as BART's tokenizer frames a text
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # right padding, as BART tokenizers pad
    mask[2, 4:] = 0
    ids[mask == 0] = PAD
    return ids, mask


def _logits(model, ids, mask, dec):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).logits


def test_load_then_save_back_with_logit_parity(pair, tmp_path):
    hf, ours, _ = pair
    ids, mask = _batch()
    dec = torch.randint(3, V, (3, 7), generator=torch.Generator().manual_seed(2))
    dec[:, 0] = EOS  # the decoder starts from </s>
    ref = _logits(hf, ids, mask, dec)
    torch.testing.assert_close(_logits(ours, ids, mask, dec), ref, atol=1e-4, rtol=1e-4)
    plmlab.save_pretrained(ours, tmp_path / "back")
    again = BartForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    torch.testing.assert_close(_logits(again, ids, mask, dec), ref, atol=1e-4, rtol=1e-4)
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == ["BartForConditionalGeneration"]


def test_labels_shift_right_from_eos_like_transformers(pair):
    hf, ours, _ = pair
    ids, mask = _batch()
    labels = torch.randint(3, V, (3, 6), generator=torch.Generator().manual_seed(4))
    labels[0, 4:] = -100
    with torch.no_grad():
        ref, out = hf(input_ids=ids, attention_mask=mask, labels=labels), ours(input_ids=ids, attention_mask=mask, labels=labels)
    torch.testing.assert_close(out.logits, ref.logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(out.loss, ref.loss, atol=1e-5, rtol=1e-5)


def _hf_generate(hf, ids, mask, **kw):
    with torch.no_grad():
        out = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, pad_token_id=PAD, **kw)
    return out[:, 1:]  # drop the decoder start token


def _eos(ours, ids, mask, **kw) -> int:
    """A token greedy decoding reaches mid-sequence, so rows and beams really end early."""
    free = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=6, eos_token_id=None, **kw)
    return int(free[1, 3])


def test_greedy_equals_transformers(pair):
    hf, ours, _ = pair
    ids, mask = _batch()
    eos = _eos(ours, ids, mask)
    ref = _hf_generate(hf, ids, mask, eos_token_id=eos, max_new_tokens=12, num_beams=1)
    assert bool((ref == eos).any()) and bool((ref == PAD).any())  # a row ended and was padded
    for cache in (True, False):
        out = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=12, eos_token_id=eos, use_cache=cache)
        assert torch.equal(out, ref), (out, ref)


@pytest.mark.parametrize("kw", [dict(num_beams=3), dict(num_beams=4, length_penalty=0.6, early_stopping=True),
                                dict(num_beams=3, no_repeat_ngram_size=2)])
def test_beam_search_equals_transformers(kw, pair):
    hf, ours, _ = pair
    ids, mask = _batch()
    eos = _eos(ours, ids, mask, **kw)
    ref = _hf_generate(hf, ids, mask, eos_token_id=eos, max_new_tokens=10, **kw)
    out = plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=10, eos_token_id=eos, **kw)
    assert torch.equal(out, ref), (out, ref)


def test_a_saved_model_generates_the_same_in_transformers_with_its_own_defaults(pair, tmp_path):
    """plmlab writes forced_eos_token_id = null (BartConfig's default 2 would force </s> at the
    length limit), so transformers' generate with no extra settings decodes as plmlab does."""
    _, ours, _ = pair
    plmlab.save_pretrained(ours, tmp_path / "saved")
    hf = BartForConditionalGeneration.from_pretrained(tmp_path / "saved").eval()
    assert hf.generation_config.forced_eos_token_id is None and hf.generation_config.decoder_start_token_id == EOS
    ids, mask = _batch()
    with torch.no_grad():
        ref = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, num_beams=1)[:, 1:]
    assert torch.equal(plmlab.generate(ours, ids, attention_mask=mask, max_new_tokens=8), ref)


def test_bare_bart_model_hidden_states(tmp_path):
    torch.manual_seed(5)
    hf = _randomise(BartModel(_hf_config()).eval())
    hf.save_pretrained(tmp_path / "base")
    ours = plmlab.load_pretrained(tmp_path / "base")
    assert ours.head is None
    ids, mask = _batch()
    dec = torch.full((3, 4), EOS)
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).last_hidden_state
        out = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec).last_hidden_state
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)


def test_preset_saves_as_bart_and_loads_in_transformers(tmp_path):
    """bart-tiny written by plmlab loads in transformers with the same logits."""
    model = plmlab.build_model("bart-tiny").eval()
    assert choose_adapter(model.config).model_type == "bart"
    plmlab.save_pretrained(model, tmp_path / "tiny")
    hf = BartForConditionalGeneration.from_pretrained(tmp_path / "tiny").eval()
    ids, mask = torch.randint(3, 2048, (2, 11)), torch.ones(2, 11, dtype=torch.long)
    dec = torch.randint(3, 2048, (2, 5))
    torch.testing.assert_close(_logits(model, ids, mask, dec), _logits(hf, ids, mask, dec), atol=1e-4, rtol=1e-4)


def test_info_shows_a_bart_checkpoint(pair):
    _, ours, path = pair
    code, out, stderr = run_cli(["info", str(path), "--json"])
    assert code == 0, stderr
    info = json.loads(out)
    assert info["params"] == ours.num_parameters()
