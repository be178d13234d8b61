"""What peers read from plmlab's files without help: GPT-2's `n_ctx` (llama.cpp's converter reads
the context length from it), a byte-level BPE pre-tokenizer that is GPT-2's (llama.cpp's "gpt-2";
docs/inference.md has the one-line converter edit), and the pickle hint for litgpt's model.pth."""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.tokenizers import STYLES, train_tokenizer

transformers = pytest.importorskip("transformers")

BPE_STYLES = [name for name, style in STYLES.items() if style.algorithm == "bpe"]
WORDS = "the parser reads a file and returns 42 tokens; it's naïve café 中文 code(x) == 3.14".split()


def test_gpt2_config_json_has_n_ctx_where_llama_cpp_reads_it(tmp_path):
    model = plmlab.build_model("gpt-tiny", vocab_size=96)
    plmlab.save_pretrained(model, tmp_path)
    # convert_hf_to_gguf.py: hparams = AutoConfig.from_pretrained(dir).to_dict(); GPT2Model then
    # writes add_context_length(hparams["n_ctx"])
    hparams = transformers.AutoConfig.from_pretrained(tmp_path).to_dict()
    assert hparams["n_ctx"] == hparams["n_positions"] == model.config.max_positions
    assert plmlab.load_pretrained(tmp_path).config == model.config  # plmlab reads n_positions, as before


@pytest.mark.parametrize("style", BPE_STYLES)
def test_byte_level_bpe_pre_tokenizer_is_gpt2s(style, tmp_path):
    """llama.cpp's converter knows a pre-tokenizer by the hash of a vocabulary's ids, so it never
    knows a self-trained one; the name to give it is "gpt-2" because the split is GPT-2's own:
    ByteLevel with GPT-2's regex, no prefix space, no normalizer (openai-community/gpt2's
    tokenizer.json)."""
    tok = train_tokenizer([" ".join(WORDS)] * 20, style, vocab_size=300, min_frequency=1)
    tok.save(tmp_path)
    saved = json.loads((tmp_path / "tokenizer.json").read_text())
    pre = saved["pre_tokenizer"]
    assert (pre["type"], pre["add_prefix_space"], pre.get("use_regex", True)) == ("ByteLevel", False, True)
    assert saved["normalizer"] is None


def _state_dict_dir(tmp_path):
    """A directory as litgpt's convert_from_litgpt leaves it: config.json beside model.pth."""
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(vocab_size=96, n_embd=32, n_layer=2, n_head=4,
                                                              n_positions=64)).eval()
    hf.config.save_pretrained(tmp_path)
    torch.save(hf.state_dict(), tmp_path / "model.pth")
    return hf


@pytest.mark.parametrize("name", ["model.pth", "lit_model.pth", "weights.pt", "last.ckpt"])
def test_a_pth_file_gets_the_pickle_hint_unread(tmp_path, name):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "vocab_size": 96, "n_embd": 32,
                                                      "n_layer": 2, "n_head": 4, "n_positions": 64}))
    (tmp_path / name).write_bytes(b"never unpickled")
    with pytest.raises(PlmlabError, match=rf"only pickle weights \({name}\) found; plmlab reads safetensors only"):
        plmlab.load_pretrained(tmp_path)


def test_following_the_pth_hint_gives_a_checkpoint_plmlab_loads(tmp_path):
    hf = _state_dict_dir(tmp_path)
    hint = r"if you trust model.pth, load it with torch.load\(\.\.\., weights_only=True\)"
    with pytest.raises(PlmlabError, match=hint):
        plmlab.load_pretrained(tmp_path)
    # what the hint and docs/interop.md say, with dir = tmp_path
    model = transformers.AutoModelForCausalLM.from_config(transformers.AutoConfig.from_pretrained(tmp_path))
    model.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))
    model.save_pretrained(tmp_path)
    x = torch.randint(0, 96, (2, 7), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(plmlab.load_pretrained(tmp_path)(input_ids=x).logits, hf(input_ids=x).logits,
                                   atol=1e-5, rtol=1e-5)
