"""SFT on every family it fits: LLaMA, GLM-4 (1-D positions) and T5 (text-to-text) learn a
small chat set; --resume continues a run; encoders are refused (GLM's 2-D-position models train:
tests/unit/test_sft_glm2d.py)."""

from __future__ import annotations

import json

import pytest
import torch

import plmlab
from plmlab.errors import PlmlabError
from plmlab.finetune.sft import sft, sft_options
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.tokenizers.chat import encode_chat

TEXTS = ["what does split do? it splits a string.", "which module has dumps? json.",
         "the model learns from text and answers questions."] * 30
CONVS = [{"prompt": "what does split do?", "response": "it splits a string."},
         {"prompt": "which module has dumps?", "response": "json."}]


def model_dir(tmp_path, preset):
    torch.manual_seed(0)
    model = plmlab.build_model(preset)
    size = 400 if model.config.tokenizer == "t5" else 300
    folder = tmp_path / preset
    plmlab.save_pretrained(model, folder, tokenizer=train_tokenizer(TEXTS, model.config.tokenizer, size))
    return folder


def data_file(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in CONVS * 4))
    return path


@pytest.mark.parametrize("preset", ["llama-tiny", "glm4-tiny", "t5-tiny"])
def test_each_family_learns_its_conversations(tmp_path, preset):
    data = data_file(tmp_path)
    history = sft(sft_options(str(model_dir(tmp_path, preset)), str(tmp_path / "run"), str(data), eval=str(data),
                              epochs=3, batch_size=4, lr=3e-3, progress="none"), log=lambda line: None)
    assert history[-1]["eval_loss"] < history[0]["eval_loss"]
    final = tmp_path / "run" / "final"
    tok = load_tokenizer(final)
    assert tok.chat_template and plmlab.load_pretrained(final).config.vocab_size >= tok.vocab_size
    assert encode_chat(tok, [{"role": "user", "content": "hi"}])  # the saved template encodes


def test_a_run_interrupted_and_resumed_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    from plmlab.finetune.run import Interrupted

    data, model = str(data_file(tmp_path)), str(model_dir(tmp_path, "gpt-tiny"))
    options = dict(epochs=2, batch_size=4, lr=1e-3, progress="none", save_every=1)
    sft(sft_options(model, str(tmp_path / "a"), data, **options), log=lambda line: None)
    monkeypatch.setenv("PLMLAB_TEST_FAULT", "sigint@3")
    with pytest.raises(Interrupted, match="--resume"):
        sft(sft_options(model, str(tmp_path / "b"), data, **options), log=lambda line: None)
    monkeypatch.delenv("PLMLAB_TEST_FAULT")
    sft(sft_options(model, str(tmp_path / "b"), data, resume=True, **options), log=lambda line: None)
    a, b = (plmlab.load_pretrained(tmp_path / run / "final").state_dict() for run in "ab")
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(PlmlabError, match="keeps its settings"):
        sft(sft_options(model, str(tmp_path / "b"), data, resume=True, **{**options, "lr": 1.0}))


@pytest.mark.parametrize("preset, reason", [("bert-tiny", "LM head")])
def test_models_sft_cannot_train_are_refused(tmp_path, preset, reason):
    with pytest.raises(PlmlabError, match=reason):
        sft(sft_options(str(model_dir(tmp_path, preset)), str(tmp_path / "run"), str(data_file(tmp_path))))
