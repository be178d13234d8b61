"""plmlab.families: which family answers for a config, and what the hooks answer (families/base.py,
families/glm.py). The layouts themselves are tested where they are used (test_glm_*.py,
test_sft_glm2d.py, test_generation.py); here: the choice and the defaults."""

from __future__ import annotations

import pytest
import torch

from plmlab import build_model
from plmlab.families import CausalInputs, family_of
from plmlab.families.glm import GlmPrefixInputs, glm_layout
from plmlab.generation import context_limit
from plmlab.presets import PRESETS, get_preset
from plmlab.tokenizers import train_tokenizer
from plmlab.tokenizers.chat import with_chat_template

TEXTS = ["the cat sat on the mat.", "a dog ran in the park."] * 20


@pytest.mark.parametrize("preset,family", [
    ("gpt-tiny", "decoder"), ("llama-tiny", "decoder"), ("qwen2-tiny", "decoder"), ("glm4-tiny", "decoder"),
    ("chatglm2-6b", "decoder"), ("glm-tiny", "glm"), ("chatglm-6b", "glm"), ("glm-mini-post", "glm"),
    ("t5-tiny", "encoder-decoder"), ("bart-tiny", "encoder-decoder"), ("bert-tiny", "encoder"), ("xlm-tiny", "encoder"),
])
def test_each_config_gets_its_family_by_its_fields(preset, family):
    assert family_of(get_preset(preset)).name == family


def test_2d_positions_make_a_glm_and_every_preset_has_a_family():
    assert family_of(get_preset("gpt-tiny").replace(position="learned-2d")).name == "glm"
    assert family_of(get_preset("glm-tiny").replace(position="learned")).name == "decoder"
    assert all(family_of(get_preset(name)) is not None for name in PRESETS)


def test_what_the_skeletons_and_glm_answer():
    gpt, glm, t5, bert = (family_of(get_preset(p)) for p in ("gpt-tiny", "glm-tiny", "t5-tiny", "bert-tiny"))
    assert [f.scorer for f in (gpt, glm, t5, bert)] == ["causal", "glm", "seq2seq", "pll"]
    assert [f.next_steps for f in (gpt, glm, t5, bert)] == ["causal", "blanks", "seq2seq", "masked"]
    assert [f.generates for f in (gpt, glm, t5, bert)] == [True, True, True, False]
    assert [f.continues_prompt for f in (gpt, glm, t5, bert)] == [True, True, False, False]
    assert [f.static_decode for f in (gpt, glm, t5, bert)] == [True, False, False, False]
    assert [f.answer_room(10, 64) for f in (gpt, glm, t5)] == [54, 53, 63]  # GLM's blank opens with <sop>
    assert t5.depth(get_preset("t5-tiny").replace(n_decoder_layers=3)) == get_preset("t5-tiny").n_layers + 3
    assert t5.answer_room(65, 64) == 0  # a prompt the encoder cannot take leaves no room
    assert type(gpt.decode_inputs(get_preset("gpt-tiny"))) is CausalInputs
    assert type(glm.decode_inputs(get_preset("glm-tiny"))) is GlmPrefixInputs
    assert context_limit(get_preset("gpt-tiny")) == get_preset("gpt-tiny").max_positions
    assert context_limit(get_preset("t5-tiny")) is None  # relative buckets: no hard limit


def test_chat_prompts_and_blank_tokens():
    messages = [{"role": "user", "content": "the cat?"}]
    glm_tok = with_chat_template(train_tokenizer(TEXTS, "glm", vocab_size=300))  # adds the template's tokens
    t5_tok = with_chat_template(train_tokenizer(TEXTS, "t5", vocab_size=300))
    glm, t5 = family_of(get_preset("glm-tiny")), family_of(get_preset("t5-tiny"))
    part_a = glm.chat_prompt(glm_tok, messages)
    tok = glm.blank_tokens(glm_tok)
    assert part_a[-1] == tok.gmask and tok.sop not in part_a  # Part A ends in the answer's blank
    assert t5.chat_prompt(t5_tok, messages)[-1] == t5_tok.eos_id  # closed with </s>, as SFT encodes T5
    assert family_of(get_preset("gpt-tiny")).blank_tokens(glm_tok) is None


def test_glm_decode_inputs_are_the_layout_of_a_blank_after_the_prompt():
    inputs = family_of(get_preset("glm-tiny")).decode_inputs(build_model("glm-tiny").config)
    mask = torch.ones(1, 4, dtype=torch.long)
    first = inputs.prefill(torch.zeros(1, 4, dtype=torch.long), mask, padded=False)
    positions, attention = glm_layout(4, [])
    assert first["position_ids"][0].tolist() == positions.tolist()
    assert first["attention_mask"][0].tolist() == attention.tolist()
    step = inputs.step(torch.ones(1, 6, dtype=torch.long), padded=False, n_new=1)
    assert step["position_ids"][0].tolist() == glm_layout(4, [(4, 2)])[0][:, -1:].tolist()
