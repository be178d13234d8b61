"""A 2-D-position GLM answers a conversation as the blank after it (plmlab.infill.answer_blank) in every
place that asks it: `plmlab chat`, serve's /v1/chat/completions (whole, streamed, logprobs, stop),
`plmlab evaluate --task generate`; and `plmlab objective sft` shows that layout. A tiny 2-D GLM
SFT-trained on one conversation answers it in that layout, and not in the 1-D prefix layout
`plmlab.generate` feeds a GLM -- so each test below fails if its path used the 1-D layout."""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import torch

import plmlab
from plmlab.cli import main
from plmlab.evaluate.generate import evaluate_generate
from plmlab.finetune.sft import chat_tokenizer, sft, sft_options
from plmlab.finetune.sft_data import conversation
from plmlab.generation.filters import build_pipeline
from plmlab.infill import answer_blank, blank_logprobs, blank_tokens, decode_span
from plmlab.masks import IGNORE_INDEX
from plmlab.families.glm import GlmTokens, glm_prompt, glm_sft_examples, text_prompt
from plmlab.pipelines.chat import Chat
from plmlab.tokenizers import load_tokenizer, train_tokenizer
from plmlab.tokenizers.chat import encode_chat, render_chat

from plmlab.serve.batch import logprob_entries, token_logprobs

from serve_helpers import running_server
from test_sft_glm2d import CONV, TEXTS, chatglm6b_layout

QUESTION, ANSWER = "what does split do?", "it splits a string."
USER = [{"role": "user", "content": QUESTION}]


@pytest.fixture(scope="module")
def random_2d(tmp_path_factory):
    """An untrained glm-tiny with 2-D positions and a GLM tokenizer carrying its chat template."""
    folder = tmp_path_factory.mktemp("glm2d-random") / "model"
    tok = chat_tokenizer(train_tokenizer(TEXTS, "glm", 300))
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("glm-tiny", position="rotary-2d", vocab_size=tok.vocab_size),
                           folder, tokenizer=tok)
    return folder


@pytest.fixture(scope="module")
def trained(random_2d, tmp_path_factory):
    """random_2d after SFT on one conversation (as tests/unit/test_sft_glm2d.py trains it): its final/."""
    root = tmp_path_factory.mktemp("glm2d-sft")
    data = root / "chat.jsonl"
    data.write_text(json.dumps({"prompt": QUESTION, "response": ANSWER}) + "\n")
    sft(sft_options(str(random_2d), str(root / "run"), str(data), epochs=60, batch_size=1, lr=1e-2,
                    progress="none", save_every=0, seed=1), log=lambda line: None)
    return root / "run" / "final"


@pytest.fixture(scope="module")
def loaded(trained):
    model, tok = plmlab.load_pretrained(trained), load_tokenizer(trained)
    assert Chat(model, tok)(USER, max_new_tokens=24, do_sample=False)["text"] == ANSWER  # SFT's answer, as the blank
    return model, tok


def prefix_reply(model, tok, messages, n: int) -> str:
    """What the 1-D prefix layout answers: plmlab.generate continuing the rendered conversation."""
    ids = encode_chat(tok, messages, add_generation_prompt=True)
    return tok.decode(plmlab.generate(model, [ids], max_new_tokens=n, eos_token_id=None)[0].tolist())


def streamed(url: str, body: dict) -> list[str]:
    """The content pieces of a streamed chat completion (server-sent events ending in [DONE])."""
    lines = [x for x in httpx.post(url + "/v1/chat/completions", json={**body, "stream": True},
                                   timeout=60).text.splitlines() if x]
    assert lines[-1] == "data: [DONE]"
    chunks = [json.loads(x[6:]) for x in lines[:-1]]
    return [c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]]


def test_blank_tokens_are_decode_spans_tokens_and_a_rendered_chat_is_glm_prompts_part_a(random_2d):
    model, tok = plmlab.load_pretrained(random_2d), load_tokenizer(random_2d)
    g = GlmTokens.from_tokenizer(tok)
    part_a, m = glm_prompt(tok, CONV["messages"][:3])
    assert text_prompt(tok, render_chat(tok, CONV["messages"][:3], True)) == (part_a, m)
    for cache in (True, False):
        want = decode_span(model, part_a, m, g, 12, cache, build_pipeline(), False, None)
        got = list(blank_tokens(model, part_a, m, g, 12, cache, build_pipeline(), False, None))
        assert [t for t in got if t not in (g.eop, g.eos)] == want and len(got) - len(want) in (0, 1)
    with pytest.raises(plmlab.PlmlabError, match="more than the model's context of 128"):
        answer_blank(model, tok, part_a, m, max_new_tokens=128)


def test_chat_streams_the_blank_token_by_token_and_honours_stop(loaded):
    model, tok = loaded
    pieces = []
    result = Chat(model, tok).reply(USER, write=pieces.append, max_new_tokens=24, do_sample=False)
    assert "".join(pieces) == result["text"] == ANSWER and len([p for p in pieces if p]) > 1
    part_a, m = glm_prompt(tok, USER)
    cut = answer_blank(model, tok, part_a, m, max_new_tokens=24, stop=["a str"])
    assert cut.text == "it splits " and cut.finish_reason == "stop" and cut.end_id is None
    done = answer_blank(model, tok, part_a, m, max_new_tokens=24)
    assert done.end_id == GlmTokens.from_tokenizer(tok).eop and tok.decode(done.ids) == ANSWER
    short = answer_blank(model, tok, part_a, m, max_new_tokens=2)
    assert short.finish_reason == "length" and len(short.ids) == 2 and ANSWER.startswith(short.text)
    with pytest.raises(plmlab.PlmlabError, match="beam search is not supported"):
        Chat(model, tok)(USER, num_beams=2)


def test_plmlab_chat_answers_from_a_pipe_as_the_blank(trained, loaded, monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTION + "\n"))
    assert main(["chat", "--model", str(trained), "--greedy", "--max-new-tokens", "24"]) == 0
    assert capsys.readouterr().out.strip() == ANSWER
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTION + "\n"))
    assert main(["chat", "--model", str(trained), "--greedy"]) == 0  # 128 new tokens: capped to what Part A leaves
    assert capsys.readouterr().out.strip() == ANSWER
    monkeypatch.setattr("sys.stdin", io.StringIO(QUESTION * 20 + "\n"))
    assert main(["chat", "--model", str(trained)]) == 2  # Part A + <sop> alone are past 128
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plmlab: error: " in err and "leaves no room for an answer" in err


def test_serve_chat_completions_answer_as_chat_does(trained, loaded):
    model, tok = loaded
    part_a, _ = glm_prompt(tok, USER)
    body = {"messages": USER, "max_tokens": 24, "temperature": 0}
    with running_server(trained) as (url, _):
        r = httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()
        choice = r["choices"][0]
        assert choice["message"]["content"] == ANSWER and choice["finish_reason"] == "stop"
        eop_counted = len(tok.encode(ANSWER, add_special_tokens=False)) + 1
        assert r["usage"] == {"prompt_tokens": len(part_a), "completion_tokens": eop_counted,
                              "total_tokens": len(part_a) + eop_counted}
        pieces = streamed(url, body)
        assert "".join(pieces) == ANSWER and len([p for p in pieces if p]) > 1
        lp = httpx.post(url + "/v1/chat/completions", json={**body, "logprobs": True, "top_logprobs": 1},
                        timeout=60).json()["choices"][0]["logprobs"]["content"]
        assert len(lp) == eop_counted and all(e["top_logprobs"][0]["token"] == e["token"] for e in lp)  # greedy
        tokens = tok.encode(ANSWER, add_special_tokens=False) + [GlmTokens.from_tokenizer(tok).eop]
        blank = [e["logprob"] for e in logprob_entries(tok, blank_logprobs(model, tok, part_a, len(part_a) - 1, tokens),
                                                         tokens, 0)]  # the blank's own numbers
        one_d = [e["logprob"] for e in token_logprobs(model, tok, encode_chat(tok, USER), tokens, 0)]
        assert [e["logprob"] for e in lp] == pytest.approx(blank, abs=1e-4)
        assert max(abs(a - b) for a, b in zip(blank, one_d)) > 1e-3  # so the 1-D layout's would not pass
        stopped = httpx.post(url + "/v1/chat/completions", json={**body, "stop": ["a str"]}, timeout=60).json()
        assert stopped["choices"][0]["message"]["content"] == "it splits "
        seeded = {**body, "temperature": 1.0, "n": 2, "seed": 3}
        a, b = (httpx.post(url + "/v1/chat/completions", json=seeded, timeout=60).json() for _ in range(2))
        assert [c["message"]["content"] for c in a["choices"]] == [c["message"]["content"] for c in b["choices"]]
        beams = httpx.post(url + "/v1/chat/completions", json={**body, "num_beams": 2}, timeout=60)
        assert beams.status_code == 400 and "num_beams" in beams.json()["error"]["message"]
        too_long = httpx.post(url + "/v1/chat/completions", json={**body, "max_tokens": 128}, timeout=60)
        assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "context_length_exceeded"


def test_serve_chat_of_a_random_2d_glm_is_chats_reply_not_the_prefix_layouts(random_2d):
    model, tok = plmlab.load_pretrained(random_2d), load_tokenizer(random_2d)
    messages = CONV["messages"][:3]
    reply = Chat(model, tok)(messages, max_new_tokens=8, do_sample=False)["text"]
    assert reply != prefix_reply(model, tok, messages, 8)  # the two layouts disagree on this model
    body = {"messages": messages, "max_tokens": 8, "temperature": 0}
    with running_server(random_2d) as (url, _):
        assert httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()["choices"][0]["message"][
            "content"] == reply
        assert "".join(streamed(url, body)) == reply
        # concurrent requests, chat and completions: a blank never joins a 1-D batch
        completion = {"prompt": "what does", "max_tokens": 4, "temperature": 0}

        def ask(i):
            path, json_ = ("/v1/chat/completions", body) if i % 2 == 0 else ("/v1/completions", completion)
            return httpx.post(url + path, json=json_, timeout=60).json()["choices"][0]

        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(ask, range(6)))
        assert [a["message"]["content"] for a in answers[::2]] == [reply] * 3
        assert len({a["text"] for a in answers[1::2]}) == 1


def test_serve_completions_of_a_2d_glm_continue_as_generate_does(random_2d):
    """/v1/completions continues a text as the blank after it (`[CLS] text [gMASK] <eos> | <sop> ...`),
    as `plmlab generate` and the text-generation pipeline do, not the 1-D prefix layout."""
    model, tok = plmlab.load_pretrained(random_2d), load_tokenizer(random_2d)
    expected = plmlab.pipeline("text-generation", model, tok)("what does", max_new_tokens=6, do_sample=False)
    prefix = tok.decode(plmlab.generate(model, [tok.encode("what does")], max_new_tokens=6, eos_token_id=None)[0].tolist())
    assert expected["text"] != prefix  # the two layouts disagree on this model
    body = {"prompt": "what does", "max_tokens": 6, "temperature": 0}
    with running_server(random_2d) as (url, _):
        r = httpx.post(url + "/v1/completions", json=body, timeout=60).json()
        assert r["choices"][0]["text"] == expected["text"]
        echoed = httpx.post(url + "/v1/completions", json={**body, "echo": True, "logprobs": 1}, timeout=60).json()
        assert echoed["choices"][0]["text"] == "what does" + expected["text"]
        assert len(echoed["choices"][0]["logprobs"]["tokens"]) >= 1
        two = httpx.post(url + "/v1/completions", json={**body, "prompt": ["a", "b"]}, timeout=60)
        assert two.status_code == 400 and "one text per request" in two.json()["error"]["message"]
        blank = httpx.post(url + "/v1/completions", json={**body, "prompt": "a [MASK] b"}, timeout=60)
        assert blank.status_code == 400 and "fill-blanks" in blank.json()["error"]["message"]


def test_evaluate_generate_predictions_are_chats_greedy_replies(loaded, random_2d):
    questions = [QUESTION, "which module has dumps?", "and dumps?"]
    tok = loaded[1]
    # the shape `plmlab sft` writes its built-in eval items in (finetune/sft.py generate_items)
    items = [{"context": render_chat(tok, [{"role": "user", "content": q}], True), "answer": ANSWER} for q in questions]

    def first_lines(texts):
        return [t.split("\n")[0].strip() for t in texts]

    for model in (loaded[0], plmlab.load_pretrained(random_2d)):  # taught, and random
        result = evaluate_generate(model, tok, items, max_new_tokens=24)
        chat = Chat(model, tok)
        replies = first_lines(chat(q, max_new_tokens=24, do_sample=False)["text"] for q in questions)
        assert [r["prediction"] for r in result.items] == replies
    one_d = first_lines(prefix_reply(model, tok, [{"role": "user", "content": q}], 24) for q in questions)
    assert one_d != replies  # on the random model the 1-D prefix layout would not pass
    taught = evaluate_generate(loaded[0], tok, items, max_new_tokens=24)
    assert taught.items[0]["prediction"] == ANSWER and taught.items[0]["exact_match"] == 1.0


def test_objective_sft_view_of_a_2d_model_is_the_training_layout(random_2d, tmp_path, capsys):
    path = tmp_path / "conv.json"
    path.write_text(json.dumps(CONV))
    assert main(["objective", "sft", "--messages", str(path), "--tokenizer", str(random_2d), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    tok = chat_tokenizer(load_tokenizer(random_2d))
    example = glm_sft_examples(tok, conversation(CONV, "x"), 512)[-1]  # SFT's own encoding of the last turn
    for key in ("input_ids", "labels", "position_ids", "attention_mask"):
        np.testing.assert_array_equal(np.asarray(out[key]), example[key])
    part_a, _ = glm_prompt(tok, CONV["messages"][:3])
    assert out["part_a"] == part_a and out["part_a_length"] == len(part_a) and out["examples"] == 2
    positions, mask = chatglm6b_layout(len(part_a), len(out["input_ids"]))
    np.testing.assert_array_equal(np.asarray(out["position_ids"]), positions)
    np.testing.assert_array_equal(np.asarray(out["attention_mask"]), mask)
    assert tok.decode([t for t in out["labels"] if t != IGNORE_INDEX], skip_special_tokens=False) == \
        "json.<|endofpiece|>"
    assert main(["objective", "sft", "--messages", str(path), "--tokenizer", str(random_2d)]) == 0
    text = capsys.readouterr().out
    assert "pos1" in text and "pos2" in text and "attention (row = query" in text and "Part A: positions 0-" in text
