"""SFT and DPO of GLM's 2-D-position models (families/glm.py): a training example is
ChatGLM-6B's layout (prompt [gMASK] | <sop> answer, loss on the answer and <eop>) and exactly
what GLM decoding builds; a few SFT steps on one conversation make greedy GLM decoding of its
prompt reproduce the answer; packed rows (one block per example) give the unpacked losses; DPO
scores a response over the same layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import plmlab
from plmlab.finetune.dpo import collate_pairs, dpo, dpo_options, read_preferences, sequence_logps
from plmlab.finetune.sft import chat_tokenizer, sft, sft_options
from plmlab.finetune.sft_data import conversation, pack
from plmlab.families.glm import GlmTokens, blank_inputs, glm_preference, glm_prompt, glm_sft_examples
from plmlab.generation.filters import build_pipeline
from plmlab.infill import decode_span
from plmlab.masks import IGNORE_INDEX
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.train import read_metrics

TEXTS = ["what does split do? it splits a string.", "which module has dumps? json.",
         "the model learns from text and answers questions."] * 30
CONV = {"messages": [{"role": "user", "content": "what does split do?"},
                     {"role": "assistant", "content": "it splits a string."},
                     {"role": "user", "content": "and dumps?"}, {"role": "assistant", "content": "json."}]}
KEYS = ("input_ids", "attention_mask", "position_ids")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("glm2d")
    tok = train_tokenizer(TEXTS, "glm", 300)
    for position in ("learned-2d", "rotary-2d"):
        torch.manual_seed(0)
        plmlab.save_pretrained(plmlab.build_model("glm-tiny", position=position), folder / position, tokenizer=tok)
    return folder


@pytest.fixture(scope="module")
def tok(root):
    return chat_tokenizer(load_tokenizer(root / "learned-2d"))


def chatglm6b_layout(n_a: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """THUDM ChatGLM-6B modeling_chatglm.py, for a prompt whose [gMASK] ends Part A: get_position_ids
    (positions arange, then the mask's position from <sop> on; block positions 1, 2, ... from <sop>)
    and get_masks (causal, every query sees the whole context)."""
    position = np.arange(total)
    position[n_a:] = n_a - 1
    block = np.concatenate([np.zeros(n_a, np.int64), np.arange(1, total - n_a + 1)])
    mask = np.tril(np.ones((total, total), np.int8))
    mask[:, :n_a] = 1
    mask[:n_a, n_a:] = 0
    return np.stack([position, block]), mask


def test_a_training_example_is_chatglm6b_layout_and_what_decoding_builds(tok):
    g = GlmTokens.from_tokenizer(tok)
    first, second = glm_sft_examples(tok, conversation(CONV, "t:1"), 128)  # one example per assistant turn
    part_a, m = glm_prompt(tok, CONV["messages"][:1])
    n_a = len(part_a)
    assert part_a[-1] == g.gmask and m == n_a - 1 and g.gmask not in part_a[:-1] and g.sop not in part_a
    assert tok.decode(part_a[:-1], skip_special_tokens=False) == "<|user|>\nwhat does split do?<|assistant|>\n"
    answer = tok.encode("it splits a string.", add_special_tokens=False)
    assert first["input_ids"].tolist() == part_a + [g.sop] + answer
    assert first["labels"].tolist() == [IGNORE_INDEX] * n_a + answer + [g.eop]  # <sop> predicts a1 ... an <eop>
    positions, mask = chatglm6b_layout(n_a, len(first["input_ids"]))
    np.testing.assert_array_equal(first["position_ids"], positions)
    np.testing.assert_array_equal(first["attention_mask"], mask)
    built = blank_inputs(part_a, m, [g.sop] + answer)  # what infill.decode_span's reference path feeds
    assert all(np.array_equal(first[k], built[k]) for k in KEYS)
    history, _ = glm_prompt(tok, CONV["messages"][:3])  # the second turn reads the first as Part A
    assert second["input_ids"][:len(history)].tolist() == history
    assert tok.decode([t for t in second["labels"] if t != IGNORE_INDEX], skip_special_tokens=False) == \
        "json.<|endofpiece|>"


@pytest.mark.parametrize("position", ["learned-2d", "rotary-2d"])
def test_packed_rows_give_the_unpacked_logits_and_loss(root, tok, position):
    model = plmlab.load_pretrained(root / position).eval()
    examples = glm_sft_examples(tok, conversation(CONV, "t"), 128) + \
        glm_sft_examples(tok, conversation({"prompt": "which module?", "response": "json."}, "u"), 128)
    batch = pack(examples, 128, 0)
    assert batch["input_ids"].shape[0] == 1 and batch["position_ids"].shape[1] == 2  # one row, 2-D positions
    with torch.no_grad():
        packed = model(**{k: batch[k] for k in KEYS}).logits[0]  # (T, V)
        start, losses = 0, []
        for e in examples:
            n = len(e["input_ids"])
            alone = model(**{k: torch.from_numpy(e[k])[None] for k in KEYS}).logits[0]  # (n, V)
            torch.testing.assert_close(packed[start:start + n], alone, atol=1e-5, rtol=1e-5)
            losses.append(F.cross_entropy(alone, torch.from_numpy(e["labels"]), ignore_index=IGNORE_INDEX,
                                          reduction="sum"))
            start += n
        n_targets = sum(int((e["labels"] != IGNORE_INDEX).sum()) for e in examples)
        loss = model(**{k: batch[k] for k in (*KEYS, "labels")}).loss
        assert float(loss) == pytest.approx(float(sum(losses)) / n_targets, rel=1e-5)


def test_sft_steps_on_one_conversation_make_greedy_decoding_reproduce_it(root, tmp_path):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"prompt": "what does split do?", "response": "it splits a string."}) + "\n")
    history = sft(sft_options(str(root / "learned-2d"), str(tmp_path / "run"), str(data), epochs=60, batch_size=1,
                              lr=1e-2, progress="none", save_every=0, seed=1), log=lambda line: None)
    assert history[-1]["train_loss"] < 0.1 * history[0]["train_loss"]
    final = tmp_path / "run" / "final"
    model, tok = plmlab.load_pretrained(final), load_tokenizer(final)
    g = GlmTokens.from_tokenizer(tok)
    assert tok.chat_template and model.config.eos_token_id == g.eop  # a blank ends with <eop>
    part_a, m = glm_prompt(tok, [{"role": "user", "content": "what does split do?"}])
    for cache in (True, False):
        span = decode_span(model, part_a, m, g, 24, cache, build_pipeline(do_sample=False), False, None)
        assert tok.decode(span) == "it splits a string."
    # `plmlab chat` answers in the same layout: the blank after the conversation
    from plmlab.pipelines.chat import Chat

    assert Chat(model, tok)("what does split do?", max_new_tokens=24, do_sample=False)["text"] == "it splits a string."


def test_train_on_prompt_is_a_warning_for_2d_models(root, tmp_path, capsys):
    data = tmp_path / "chat.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "response": "json."}) + "\n")
    sft(sft_options(str(root / "rotary-2d"), str(tmp_path / "run"), str(data), epochs=1, batch_size=1,
                    progress="none", train_on_prompt=True), log=lambda line: None)
    assert "--train-on-prompt has no effect on a 2-D-position GLM" in capsys.readouterr().err


# ---------------------------------------------------------------------------- DPO
@pytest.fixture(scope="module")
def prefs(tmp_path_factory):
    path = tmp_path_factory.mktemp("prefs") / "prefs.jsonl"
    rows = [{"prompt": p, "chosen": c, "rejected": r} for p, c, r in
            [("what does split do?", " it splits a string.", " json."), ("which module has dumps?", " json.", " text."),
             ("the model learns?", " from text.", " a string split on it.")]] * 2
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("chat", [True, False])
def test_dpo_scores_each_response_over_the_sft_layout(root, tok, prefs, chat):
    """With a chat template, Part A is the prompt as SFT trains it and chat decodes it (the template's
    user turn and generation prompt, `glm_prompt`); without one, the prompt's text as it is."""
    if not chat:
        tok = load_tokenizer(root / "rotary-2d")  # only pretrained: no <|user|> token, no template
    g = GlmTokens.from_tokenizer(tok)
    model = plmlab.load_pretrained(root / "rotary-2d").eval()
    records = read_preferences(str(prefs))[:3]
    examples = [glm_preference(r, tok, 64, False) for r in records]
    batch = collate_pairs(examples, 0)
    assert batch["position_ids"].shape[:2] == (6, 2) and batch["attention_mask"].dim() == 3
    with torch.no_grad():
        logps = sequence_logps(model(**{k: batch[k] for k in KEYS}).logits, batch["labels"])  # (6,)
        for i, r in enumerate(records):
            for j, key in enumerate(("chosen", "rejected")):
                prompt = glm_prompt(tok, [{"role": "user", "content": r["prompt"]}])[0] if chat else \
                    tok.encode(r["prompt"], add_special_tokens=False) + [g.gmask]
                response = tok.encode(r[key], add_special_tokens=False)
                example = blank_inputs(prompt, len(prompt) - 1, [g.sop] + response)  # SFT's / decoding's layout
                targets = response + [g.eop]
                logp = model(**{k: torch.from_numpy(example[k])[None] for k in KEYS}).logits[0].log_softmax(-1)
                want = sum(float(logp[len(prompt) + t, token]) for t, token in enumerate(targets))
                assert float(logps[j * 3 + i]) == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_dpo_on_a_2d_glm_trains_and_saves(root, prefs, tmp_path):
    history = dpo(dpo_options(str(root / "learned-2d"), str(prefs), str(tmp_path / "run"), epochs=4, batch_size=2,
                              lr=3e-3, progress="none", eval=str(prefs)), log=lambda line: None)
    records = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert len(records) == 12 and all(np.isfinite(r["loss"]) for r in records)
    assert history[-1]["eval_loss"] < history[0]["eval_loss"] and history[-1]["eval_reward_accuracy"] == 1.0
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
