"""XLM against `transformers`' XLMWithLMHeadModel on tiny random models, in both directions:
with and without language embeddings, causal and not, learned and sinusoidal positions.

HF -> plmlab: a perturbed random HF model (every tensor moved, so a swapped norm or a missing
bias shows) is saved and loaded with `plmlab.load_pretrained`; plmlab -> HF: a plmlab model
saved with `plmlab.save_pretrained` is loaded by the class `architectures` names. Logits are
compared at real (non-pad) positions: HF zeroes the hidden states of pads, plmlab does not.
"""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.config import Config
from plmlab.errors import PlmlabError
from plmlab.modeling import count_parameters
from plmlab.presets import get_preset

transformers = pytest.importorskip("transformers")

SMALL = dict(vocab_size=99, emb_dim=32, n_layers=2, n_heads=4, max_position_embeddings=24, dropout=0.0,
             attention_dropout=0.0, pad_token_id=2, bos_token_id=0, eos_token_id=1)
CASES = {  # name -> XLMConfig extras
    "mlm-langs": dict(n_langs=3, use_lang_emb=True, id2lang={0: "de", 1: "en", 2: "fr"},
                      lang2id={"de": 0, "en": 1, "fr": 2}),
    "mlm-mono": dict(n_langs=1),
    "clm-langs": dict(n_langs=2, causal=True),
    "mlm-sinusoidal-relu": dict(n_langs=2, sinusoidal_embeddings=True, gelu_activation=False),
}


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "position_embeddings" not in name or not model.config.sinusoidal_embeddings:
                p.copy_(p + 0.1 * torch.randn(p.shape, generator=g))
    return model.eval()


def inputs(n_langs: int) -> tuple[dict, torch.Tensor]:
    """A padded batch (ids never the pad id, which HF masks by itself) and its language ids."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 99, (3, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    langs = torch.randint(0, max(1, n_langs), ids.shape, generator=g)
    return {"input_ids": ids, "attention_mask": mask}, langs


def compare(ours, theirs, mask) -> None:
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_hf_to_plmlab(case, hf_dir):
    cfg = transformers.XLMConfig(**SMALL, **CASES[case])
    hf = perturbed(transformers.XLMWithLMHeadModel(cfg))
    hf.save_pretrained(hf_dir)
    ours = plmlab.load_pretrained(hf_dir)
    assert ours.config.arch == ("decoder" if cfg.causal else "encoder")
    assert ours.config.n_languages == (cfg.n_langs if cfg.n_langs > 1 else 0)
    assert ours.config.position == ("sinusoidal" if cfg.sinusoidal_embeddings else "learned")
    batch, langs = inputs(cfg.n_langs)
    extra_hf = {"langs": langs} if cfg.n_langs > 1 else {}
    extra = {"language_ids": langs} if cfg.n_langs > 1 else {}
    with torch.no_grad():
        want = hf(**batch, **extra_hf).logits
        got = ours(**batch, **extra).logits
    compare(got, want, batch["attention_mask"])
    if case == "mlm-langs":
        assert ours.config.languages == ["de", "en", "fr"]
    # HF holds the sinusoidal table as a parameter; plmlab computes it (a buffer, not counted)
    table = cfg.max_position_embeddings * cfg.emb_dim if cfg.sinusoidal_embeddings else 0
    assert count_parameters(ours.config)["params"] == sum(p.numel() for p in hf.parameters()) - table


@pytest.mark.parametrize("case", CASES)
def test_plmlab_to_hf(case, tmp_path):
    cfg = transformers.XLMConfig(**SMALL, **CASES[case])
    src = tmp_path / "src"
    perturbed(transformers.XLMWithLMHeadModel(cfg)).save_pretrained(src)
    ours = plmlab.load_pretrained(src)
    # change every weight on our side, so the HF model can only match what plmlab wrote
    with torch.no_grad():
        for p in ours.parameters():
            p.mul_(1.05)
    plmlab.save_pretrained(ours, tmp_path / "out")
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["model_type"] == "xlm" and written["architectures"] == ["XLMWithLMHeadModel"]
    hf = transformers.XLMWithLMHeadModel.from_pretrained(tmp_path / "out").eval()
    batch, langs = inputs(cfg.n_langs)
    with torch.no_grad():
        extra_hf = {"langs": langs} if cfg.n_langs > 1 else {}
        want = hf(**batch, **extra_hf).logits
        got = ours(**batch, **({"language_ids": langs} if cfg.n_langs > 1 else {})).logits
    compare(got, want, batch["attention_mask"])
    if case == "mlm-langs":
        assert written["lang2id"] == {"de": 0, "en": 1, "fr": 2}


def test_preset_round_trip_and_published_size(tmp_path):
    """xlm-tiny saves as XLM that transformers loads; xlm-mlm-en-2048 has the released model's count."""
    torch.manual_seed(0)
    model = plmlab.build_model("xlm-tiny").eval()
    plmlab.save_pretrained(model, tmp_path)
    hf = transformers.XLMWithLMHeadModel.from_pretrained(tmp_path).eval()
    ids = torch.randint(3, 2048, (2, 7))
    langs = torch.tensor([[0] * 7, [1] * 7])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, language_ids=langs).logits, hf(ids, langs=langs).logits,
                                   atol=1e-4, rtol=1e-4)
    with torch.device("meta"):
        released = transformers.XLMWithLMHeadModel(transformers.XLMConfig())  # the defaults are xlm-mlm-en-2048's
    want = sum(p.numel() for p in released.parameters())
    assert count_parameters(get_preset("xlm-mlm-en-2048"))["params"] == want


def test_sinusoidal_table_trained_loads_as_learned(hf_dir):
    cfg = transformers.XLMConfig(**SMALL, n_langs=2, sinusoidal_embeddings=True)
    hf = transformers.XLMWithLMHeadModel(cfg).eval()
    with torch.no_grad():
        hf.transformer.position_embeddings.weight.add_(0.01)
    hf.save_pretrained(hf_dir)
    assert plmlab.load_pretrained(hf_dir).config.position == "learned"


def test_language_ids_errors():
    torch.manual_seed(0)
    ids = torch.randint(3, 100, (1, 5))
    with pytest.raises(PlmlabError, match="no language embeddings"):
        plmlab.build_model("bert-tiny")(ids, language_ids=torch.zeros_like(ids))
    with pytest.raises(PlmlabError, match=r"language ids must be in \[0, 2\)"):
        plmlab.build_model("xlm-tiny")(ids, language_ids=torch.full_like(ids, 2))
    with pytest.raises(PlmlabError, match="n_languages"):
        Config(n_languages=2, languages=["en"])


def test_asm_refused(hf_dir):
    cfg = transformers.XLMConfig(**SMALL)
    transformers.XLMWithLMHeadModel(cfg).save_pretrained(hf_dir)
    data = json.loads((hf_dir / "config.json").read_text())
    (hf_dir / "config.json").write_text(json.dumps({**data, "asm": True}))
    with pytest.raises(PlmlabError, match="adaptive softmax"):
        plmlab.load_pretrained(hf_dir)


def test_causal_xlm_greedy_generation_matches_hf_forward(hf_dir):
    """Causal XLM generates through plmlab's KV cache; each step's token is HF's full-forward argmax.
    (HF's own `generate` for XLM appends a mask token to the prompt, so its full forward is the oracle.)"""
    cfg = transformers.XLMConfig(**SMALL, n_langs=2, causal=True)
    hf = perturbed(transformers.XLMWithLMHeadModel(cfg))
    hf.save_pretrained(hf_dir)
    ours = plmlab.load_pretrained(hf_dir)
    prompt = torch.tensor([[5, 17, 33, 8]])
    got = plmlab.generate(ours, prompt, max_new_tokens=6)
    ids = prompt
    with torch.no_grad():
        for _ in range(6):
            ids = torch.cat([ids, hf(ids).logits[:, -1:].argmax(-1)], dim=1)
    assert got.tolist() == ids[:, 4:].tolist()


def test_bare_xlm_model_loads_without_head(hf_dir, tmp_path):
    cfg = transformers.XLMConfig(**SMALL, n_langs=2)
    hf = perturbed(transformers.XLMModel(cfg))
    hf.save_pretrained(hf_dir)
    ours = plmlab.load_pretrained(hf_dir)
    assert ours.config.head == "none"
    batch, langs = inputs(2)
    with torch.no_grad():
        want = hf(**batch, langs=langs).last_hidden_state
        got = ours(**batch, language_ids=langs).last_hidden_state
    compare(got, want, batch["attention_mask"])
    plmlab.save_pretrained(ours, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["architectures"] == ["XLMModel"]
    back = transformers.XLMModel.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        compare(back(**batch, langs=langs).last_hidden_state, want, batch["attention_mask"])


def test_tlm_style_inputs_match_hf(hf_dir):
    """A TLM batch (positions restarting for the second sentence, a language per half) gives HF's logits."""
    cfg = transformers.XLMConfig(**SMALL, n_langs=2)
    hf = perturbed(transformers.XLMWithLMHeadModel(cfg))
    hf.save_pretrained(hf_dir)
    ours = plmlab.load_pretrained(hf_dir)
    ids = torch.randint(3, 99, (2, 10), generator=torch.Generator().manual_seed(2))
    positions = torch.tensor([list(range(4)) + list(range(6))] * 2)
    langs = torch.tensor([[0] * 4 + [1] * 6, [1] * 4 + [0] * 6])
    with torch.no_grad():
        want = hf(ids, langs=langs, position_ids=positions).logits
        got = ours(ids, language_ids=langs, position_ids=positions).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_a_layout_without_language_embeddings_is_never_chosen_for_a_model_that_has_them(tmp_path):
    # bert-tiny plus a language table: BERT's names have no place for embed.languages.weight, so an
    # automatic save must not pick BERT's layout and silently drop the table
    config = get_preset("bert-tiny").replace(n_languages=2, languages=["en", "fr"])
    from plmlab.models import EncoderModel

    model = EncoderModel(config)
    saved = plmlab.hf.save_pretrained(model, tmp_path / "m")
    assert json.loads((saved / "config.json").read_text())["model_type"] != "bert"
    back = plmlab.hf.load_pretrained(saved)
    assert torch.equal(back.state_dict()["embed.languages.weight"], model.state_dict()["embed.languages.weight"])
    with pytest.raises(PlmlabError, match="no place for embed.languages.weight"):
        plmlab.hf.save_pretrained(model, tmp_path / "b", format="bert")
