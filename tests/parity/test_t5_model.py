"""T5 v1.0 / v1.1: preset sizes against transformers, the relative bucket function, exact
parity both ways for T5ForConditionalGeneration / T5Model / T5EncoderModel, cached decoding."""

import json

import pytest
import torch

import plmlab
from plmlab import count_parameters
from plmlab.hf import load_config
from plmlab.nn.position import relative_position_bucket
from plmlab.presets import get_preset

transformers = pytest.importorskip("transformers")
from transformers import T5Config, T5EncoderModel, T5ForConditionalGeneration, T5Model  # noqa: E402
from transformers.models.t5.modeling_t5 import T5Attention  # noqa: E402

V = 101
PAPER = {"t5-small": 60.5e6, "t5-base": 222.9e6, "t5-large": 737.7e6, "t5-3b": 2.85e9, "t5-11b": 11.3e9,
         "t5-v1.1-small": 77.0e6, "t5-v1.1-base": 247.6e6, "t5-v1.1-large": 783.2e6, "t5-v1.1-xl": 2.85e9,
         "t5-v1.1-xxl": 11.1e9}


# --- sizes ----------------------------------------------------------------------------------
def _hf_count(config) -> int:
    """transformers' count for the HF config plmlab writes, on the meta device. transformers 5
    always ties lm_head to shared; a real v1.1 checkpoint (distinct lm_head) unties it on load,
    so for untied configs the separate head is put back before counting."""
    from plmlab.hf import choose_adapter

    hf_config = T5Config(**choose_adapter(config).config_to_hf(config))
    with torch.device("meta"):
        hf = T5ForConditionalGeneration(hf_config)
        if not config.tie_embeddings:
            hf.lm_head.weight = torch.nn.Parameter(torch.empty_like(hf.lm_head.weight))
    return hf.num_parameters()


@pytest.mark.parametrize("name", list(PAPER))
def test_preset_counts_equal_transformers_and_paper(name):
    config = get_preset(name)
    n = count_parameters(config)["params"]
    assert n == _hf_count(config), name
    assert abs(n - PAPER[name]) / PAPER[name] < 0.01, (name, n)


def test_known_exact_counts():
    # the numbers transformers reports for google-t5/t5-small and google/t5-v1_1-small
    assert count_parameters(get_preset("t5-small"))["params"] == 60_506_624
    assert count_parameters(get_preset("t5-v1.1-small"))["params"] == 76_961_152


@pytest.mark.parametrize("name, rate", [("t5-small", 0.1), ("t5-v1.1-small", 0.0)])
def test_preset_dropout_is_what_the_published_config_loads_as(name, rate, tmp_path):
    # google-t5/t5-small's config.json has dropout_rate 0.1 (and T5Attention applies it to the
    # attention probabilities too); v1.1 pretrained without dropout. The preset must equal what
    # loading that published config gives, attention dropout included.
    config = get_preset(name)
    T5Config(d_model=config.d_model, num_layers=config.n_layers, num_heads=config.n_heads, d_ff=config.d_ff,
             dropout_rate=rate).save_pretrained(tmp_path)
    loaded = load_config(tmp_path)
    assert (config.dropout, config.attn_dropout) == (loaded.dropout, loaded.attn_dropout) == (rate, rate)


# --- relative position buckets ------------------------------------------------------------------
@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("buckets, max_distance", [(32, 128), (16, 64), (64, 300)])
def test_relative_bucket_function_equals_transformers(bidirectional, buckets, max_distance):
    rel = torch.arange(-700, 701)[None, :] - torch.arange(0, 3)[:, None]  # (3, 1401)
    ours = relative_position_bucket(rel, bidirectional, buckets, max_distance)
    ref = T5Attention._relative_position_bucket(rel, bidirectional, buckets, max_distance)
    assert torch.equal(ours, ref)
    assert int(ours.min()) == 0 and int(ours.max()) == buckets - 1  # every bucket reachable


# --- parity -----------------------------------------------------------------------------------
def t5_config(version: str, **kw) -> T5Config:
    base = dict(vocab_size=V, d_model=32, d_kv=8, d_ff=48, num_layers=2, num_decoder_layers=3, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0,
                initializer_factor=1.0)
    if version == "v1.1":
        base.update(feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    return T5Config(**{**base, **kw})


def _untie(model):
    """A v1.1 model as its checkpoints are: an lm_head of its own (transformers 5 ties it)."""
    model.lm_head.weight = torch.nn.Parameter(torch.randn_like(model.shared.weight))
    return model


def _inputs(seq=23, dec=19):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(2, V, (2, seq), generator=g)
    mask = torch.ones_like(ids)
    mask[1, seq - 5:] = 0  # right padding in the second row (distances > max_distance too)
    dec_ids = torch.randint(2, V, (2, dec), generator=g)
    dec_ids[:, 0] = 0
    return ids, mask, dec_ids


def _logits(model, ids, mask, dec_ids):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids).logits


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_generation_model_load_hf_then_save_back(version, tmp_path):
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(t5_config(version)).eval()
    if version == "v1.1":
        _untie(hf)
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    c = ours.config
    assert (c.tie_embeddings, c.output_scale is not None, c.gated_mlp) == (
        (True, True, False) if version == "v1.0" else (False, False, True))
    ids, mask, dec_ids = _inputs()
    ref = _logits(hf, ids, mask, dec_ids)
    out = _logits(ours, ids, mask, dec_ids)
    assert ref.abs().max() > 1e-1
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # the loss, from labels (shift right from the decoder start token)
        labels = torch.cat([dec_ids[:, 1:], torch.full((2, 1), 1)], dim=1)
        torch.testing.assert_close(ours(input_ids=ids, attention_mask=mask, labels=labels).loss,
                                   hf(input_ids=ids, attention_mask=mask, labels=labels).loss, atol=1e-5, rtol=1e-5)

    plmlab.save_pretrained(ours, tmp_path / "back")
    hf2 = T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    assert (hf2.lm_head.weight is hf2.shared.weight) == (version == "v1.0")
    torch.testing.assert_close(_logits(hf2, ids, mask, dec_ids), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("preset, overrides", [
    ("t5-tiny", {}),  # v1.1
    ("t5-tiny", dict(activation="relu", gated_mlp=False, tie_embeddings=True, output_scale=64 ** -0.5)),  # v1.0
])
def test_save_ours_then_load_in_transformers(preset, overrides, tmp_path):
    torch.manual_seed(0)
    ours = plmlab.build_model(preset, vocab_size=V, **overrides).eval()
    plmlab.save_pretrained(ours, tmp_path / "ours")
    hf_json = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert hf_json["architectures"] == ["T5ForConditionalGeneration"]
    hf = T5ForConditionalGeneration.from_pretrained(tmp_path / "ours").eval()
    assert hf.config.scale_decoder_outputs == (ours.config.output_scale is not None)
    ids, mask, dec_ids = _inputs(seq=40)
    ref = _logits(hf, ids, mask, dec_ids)
    assert ref.abs().max() > 1e-2
    torch.testing.assert_close(_logits(ours, ids, mask, dec_ids), ref, atol=1e-4, rtol=1e-4)


def test_hf5_saved_v11_config_is_tied_and_unscaled(tmp_path):
    """transformers 5 writes an untied v1.1 config as tied + scale_decoder_outputs=false."""
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(t5_config("v1.1")).eval()  # tied by transformers 5
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert ours.config.tie_embeddings and ours.config.output_scale is None
    ids, mask, dec_ids = _inputs()
    ref = _logits(hf, ids, mask, dec_ids)
    torch.testing.assert_close(_logits(ours, ids, mask, dec_ids), ref, atol=1e-4, rtol=1e-4)
    plmlab.save_pretrained(ours, tmp_path / "back")  # tied and unscaled: both flags written
    hf2 = T5ForConditionalGeneration.from_pretrained(tmp_path / "back").eval()
    assert not hf2.config.scale_decoder_outputs
    torch.testing.assert_close(_logits(hf2, ids, mask, dec_ids), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_encoder_model_both_ways(version, tmp_path):
    torch.manual_seed(0)
    hf = T5EncoderModel(t5_config(version)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert ours.config.arch == "encoder" and ours.config.head == "none"
    ids, mask, _ = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask).last_hidden_state
        out = ours(input_ids=ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(out[keep], ref[keep], atol=1e-4, rtol=1e-4)
    plmlab.save_pretrained(ours, tmp_path / "back")
    assert json.loads((tmp_path / "back" / "config.json").read_text())["architectures"] == ["T5EncoderModel"]
    hf2 = T5EncoderModel.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        back = hf2(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(back[keep], ref[keep], atol=1e-4, rtol=1e-4)


def test_base_model_without_head_both_ways(tmp_path):
    torch.manual_seed(0)
    hf = T5Model(t5_config("v1.1")).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert ours.config.arch == "encoder-decoder" and ours.head is None
    ids, mask, dec_ids = _inputs()
    with torch.no_grad():
        ref = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids).last_hidden_state
        out = ours(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids).last_hidden_state
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    plmlab.save_pretrained(ours, tmp_path / "back")
    hf2 = T5Model.from_pretrained(tmp_path / "back").eval()
    with torch.no_grad():
        back = hf2(input_ids=ids, attention_mask=mask, decoder_input_ids=dec_ids).last_hidden_state
    torch.testing.assert_close(back, ref, atol=1e-4, rtol=1e-4)


def test_old_checkpoint_extra_keys_are_ignored(tmp_path):
    """Old checkpoints also store encoder/decoder.embed_tokens (copies of shared)."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(t5_config("v1.0")).eval()
    hf.save_pretrained(tmp_path / "hf")
    f = tmp_path / "hf" / "model.safetensors"
    state = load_file(f)
    state["encoder.embed_tokens.weight"] = state["decoder.embed_tokens.weight"] = state["shared.weight"]
    state["lm_head.weight"] = state["shared.weight"].clone()  # stored, but equal: stays tied
    save_file({k: v.clone() for k, v in state.items()}, f, metadata={"format": "pt"})
    ours = plmlab.load_pretrained(tmp_path / "hf")
    assert ours.config.tie_embeddings
    ids, mask, dec_ids = _inputs()
    torch.testing.assert_close(_logits(ours, ids, mask, dec_ids), _logits(hf, ids, mask, dec_ids),
                               atol=1e-4, rtol=1e-4)


# --- cached decoding ----------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["v1.0", "v1.1"])
def test_cached_decoding_equals_uncached(version, tmp_path):
    torch.manual_seed(0)
    hf = T5ForConditionalGeneration(t5_config(version)).eval()
    hf.save_pretrained(tmp_path / "hf")
    model = plmlab.load_pretrained(tmp_path / "hf")
    ids, mask, dec_ids = _inputs()
    full = _logits(model, ids, mask, dec_ids)
    with torch.no_grad():
        memory = model.encode(ids, mask)
        cache = model.new_cache(batch=2, max_len=dec_ids.shape[1])
        steps = [model(attention_mask=mask, decoder_input_ids=dec_ids[:, :5], cache=cache,
                       encoder_last_hidden_state=memory).logits]  # a 5-token prefill, then one at a time
        for t in range(5, dec_ids.shape[1]):
            steps.append(model(attention_mask=mask, decoder_input_ids=dec_ids[:, t:t + 1], cache=cache,
                               encoder_last_hidden_state=memory).logits)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert all(c is not None for c in cache.cross)  # cross-attention keys/values computed once
