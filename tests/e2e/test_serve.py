"""plmlab serve, functional: a real server on 127.0.0.1 (ephemeral port) answering the official
`openai` client (streaming too), batching that gives the tokens of one-by-one decoding, every
family's endpoint, and the model card. Tiny random models: seconds in all."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import torch

import plmlab
from plmlab.serve import ServeOptions
from plmlab.tokenizers import load_tokenizer

from serve_helpers import running_server, tiny_checkpoint

openai = pytest.importorskip("openai", reason="the openai client is in the test extra")

PROMPTS = ["the cat", "a dog sat on the", "the old bird looked at the clear", "mat"]


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("serve"))


def _greedy(model, tok, prompt: str, n: int) -> str:
    out = plmlab.generate(model, [tok.encode(prompt)], max_new_tokens=n, eos_token_id=None)[0].tolist()
    return tok.decode(out)


def test_openai_client_completions_and_stream(gpt):
    model, tok = plmlab.load_pretrained(gpt), load_tokenizer(gpt)
    with running_server(gpt) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["gpt-tiny"]
        r = client.completions.create(model="gpt-tiny", prompt=PROMPTS[0], max_tokens=6, temperature=0)
        expected = _greedy(model, tok, PROMPTS[0], 6)
        assert r.choices[0].text == expected and r.choices[0].finish_reason == "length"
        assert r.usage.prompt_tokens == len(tok.encode(PROMPTS[0])) and r.usage.completion_tokens == 6
        pieces = [c.choices[0].text for c in client.completions.create(
            model="gpt-tiny", prompt=PROMPTS[0], max_tokens=6, temperature=0, stream=True)]
        assert "".join(pieces) == expected and len([p for p in pieces if p]) > 1  # token by token
        # n choices, seeded sampling: the same seed, the same choices
        kw = dict(model="gpt-tiny", prompt=PROMPTS[1], max_tokens=5, temperature=1.0, n=3, seed=7)
        a, b = client.completions.create(**kw), client.completions.create(**kw)
        assert [c.text for c in a.choices] == [c.text for c in b.choices] and len(a.choices) == 3
        assert [c.index for c in a.choices] == [0, 1, 2]
        with pytest.raises(openai.BadRequestError, match="temperature"):
            client.completions.create(model="gpt-tiny", prompt="x", temperature=2.5)
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="gpt-9", prompt="x")


def test_stop_strings_echo_and_logprobs(gpt):
    model, tok = plmlab.load_pretrained(gpt), load_tokenizer(gpt)
    full = _greedy(model, tok, PROMPTS[2], 8)
    stop = full[3:5]
    with running_server(gpt) as (url, _):
        c = httpx.Client(base_url=url, timeout=30)
        body = {"prompt": PROMPTS[2], "max_tokens": 8, "temperature": 0, "stop": [stop], "echo": True, "logprobs": 2}
        choice = c.post("/v1/completions", json=body).json()["choices"][0]
        assert choice["text"] == PROMPTS[2] + full[:full.find(stop)] and choice["finish_reason"] == "stop"
        lp = choice["logprobs"]
        assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) >= 1
        ids = tok.encode(PROMPTS[2])
        out = plmlab.generate(model, [ids], max_new_tokens=1, eos_token_id=None)[0].tolist()
        with torch.no_grad():
            logp = model(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        assert lp["token_logprobs"][0] == pytest.approx(float(logp[out[0]]), abs=1e-5)
        assert max(lp["top_logprobs"][0].values()) == pytest.approx(float(logp.max()), abs=1e-5)
        assert lp["text_offset"][0] == len(PROMPTS[2])


def test_concurrent_greedy_requests_share_batches_and_match_one_by_one(gpt):
    model, tok = plmlab.load_pretrained(gpt), load_tokenizer(gpt)
    prompts = PROMPTS * 2
    lengths = [4, 9, 6, 12, 3, 7, 10, 5]  # each row stops at its own max_tokens
    expected = [_greedy(model, tok, p, n) for p, n in zip(prompts, lengths)]
    with running_server(gpt, batch_wait=0.3, max_batch=16) as (url, state):
        def ask(i):
            with httpx.Client(base_url=url, timeout=30) as c:
                return c.post("/v1/completions", json={"prompt": prompts[i], "max_tokens": lengths[i],
                                                       "temperature": 0}).json()["choices"][0]["text"]

        with ThreadPoolExecutor(len(prompts)) as pool:
            got = list(pool.map(ask, range(len(prompts))))
        batches = state.metrics.batch_rows.series[()]
    assert got == expected
    assert batches[2] < len(prompts)  # fewer batches than requests: they shared forward passes


def test_chat_with_a_template_from_tokenizer_config(tmp_path):
    """Needs plmlab.tokenizers.chat (the instruction-tuning branch): a template in
    tokenizer_config.json's "chat_template", as transformers keeps it."""
    path = tiny_checkpoint(tmp_path)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    from plmlab.tokenizers.chat import encode_chat

    model, tok = plmlab.load_pretrained(path), load_tokenizer(path)
    messages = [{"role": "user", "content": "the cat"}]
    ids = encode_chat(tok, messages, add_generation_prompt=True)
    assert tok.decode(ids).strip().endswith("user: the cat\nassistant:")  # the template was rendered
    out = plmlab.generate(model, [ids], max_new_tokens=5, eos_token_id=None)[0].tolist()
    expected = tok.decode(out)
    with running_server(path) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=30)
        r = client.chat.completions.create(model="gpt-tiny", messages=messages, max_tokens=5, temperature=0)
        assert r.choices[0].message.content == expected and r.choices[0].message.role == "assistant"
        assert r.usage.prompt_tokens == len(ids)
        chunks = list(client.chat.completions.create(model="gpt-tiny", messages=messages, max_tokens=5,
                                                     temperature=0, stream=True))
        assert chunks[0].choices[0].delta.role == "assistant"
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == expected


def test_chat_without_a_template_and_completions_on_an_encoder_are_400(gpt, tmp_path):
    with running_server(gpt) as (url, _):
        r = httpx.post(url + "/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 400 and "model has no chat template" in r.json()["error"]["message"]
    bert = tiny_checkpoint(tmp_path, "bert-tiny", "bert", max_positions=32)
    with running_server(bert) as (url, _):
        r = httpx.post(url + "/v1/completions", json={"prompt": "the cat"})
        assert r.status_code == 400 and "cannot do completions" in r.json()["error"]["message"]
        r = httpx.post(url + "/v1/fill-mask", json={"input": "the cat [MASK] on the mat", "top_k": 3}, timeout=30)
        expected = plmlab.pipeline("fill-mask", model=str(bert), top_k=3)("the cat [MASK] on the mat")
        assert r.status_code == 200 and r.json()["data"] == [expected]
        r = httpx.post(url + "/v1/fill-mask", json={"input": "no mask here"})
        assert r.status_code == 400 and "[MASK]" in r.json()["error"]["message"]


def test_text2text_on_t5_and_glm_completions(tmp_path):
    t5 = tiny_checkpoint(tmp_path, "t5-tiny", "t5")
    text = "the cat <extra_id_0> on the mat"
    expected = plmlab.pipeline("text2text", model=str(t5), max_new_tokens=6)(text)
    with running_server(t5) as (url, _):
        r = httpx.post(url + "/v1/text2text", json={"input": [text], "max_tokens": 6}, timeout=30)
        assert r.status_code == 200
        item = r.json()["data"][0]
        assert item["text"] == expected["text"] and item.get("fills") == expected.get("fills")
    glm = tiny_checkpoint(tmp_path, "glm-tiny", "glm")
    model, tok = plmlab.load_pretrained(glm), load_tokenizer(glm)
    with running_server(glm, batch_wait=0.2) as (url, _):
        def ask(p):
            return httpx.post(url + "/v1/completions", json={"prompt": p, "max_tokens": 5, "temperature": 0},
                              timeout=30).json()["choices"][0]["text"]

        with ThreadPoolExecutor(3) as pool:
            got = list(pool.map(ask, PROMPTS[:3]))
    # glm-tiny has 2-D positions: a completion is the blank after the text, as `plmlab generate` continues it
    generate = plmlab.pipeline("text-generation", model, tok)
    assert got == [generate(p, max_new_tokens=5, do_sample=False)["text"] for p in PROMPTS[:3]]


def test_model_card_health_and_metrics(gpt):
    with running_server(gpt) as (url, _):
        card = httpx.get(url + "/v1/models/gpt-tiny").json()
        assert card["arch"] == "decoder" and card["context_length"] == 64 and card["tasks"] == ["completions"]
        assert card["params"] == plmlab.modeling.count_parameters(plmlab.load_pretrained(gpt).config)["params"]
        assert httpx.get(url + "/health").json()["status"] == "ok"
        httpx.post(url + "/v1/completions", json={"prompt": "the", "max_tokens": 2}, timeout=30)
        text = httpx.get(url + "/metrics").text
    assert 'plmlab_requests_total{endpoint="/v1/completions",status="200"} 1' in text
    assert "plmlab_completion_tokens_total 2" in text and "# TYPE plmlab_queue_depth gauge" in text
    assert 'plmlab_request_latency_seconds_count{endpoint="/v1/completions"} 1' in text


def test_one_access_log_line_per_request(gpt, capsys):
    """client, method, path, status, milliseconds and, where counted, the tokens (a stream's at its
    end); ServeOptions(access_log=False), `--no-access-log`, keeps stderr quiet."""
    assert ServeOptions().access_log  # on by default
    body = {"prompt": "the cat", "max_tokens": 3, "temperature": 0}
    with running_server(gpt, access_log=True) as (url, _):
        capsys.readouterr()
        httpx.get(url + "/health")
        httpx.post(url + "/v1/completions", json=body, timeout=30)
        httpx.post(url + "/v1/completions", json={**body, "stream": True}, timeout=30)
        httpx.post(url + "/v1/completions", json={**body, "temperature": 9}, timeout=30)
    lines = capsys.readouterr().err.splitlines()  # the server has stopped: every line is out
    assert len(lines) == 4, lines
    pattern = r'plmlab: 127\.0\.0\.1:\d+ "{} {}" {} \d+ ms{}'
    prompt = len(plmlab.load_tokenizer(gpt).encode("the cat"))
    tokens = f" prompt_tokens={prompt} completion_tokens=3"
    for line, want in zip(lines, [("GET", "/health", 200, ""), ("POST", "/v1/completions", 200, tokens),
                                  ("POST", "/v1/completions", 200, tokens), ("POST", "/v1/completions", 400, "")]):
        assert re.fullmatch(pattern.format(*want), line), (line, want)
    with running_server(gpt, access_log=False) as (url, _):
        capsys.readouterr()
        httpx.post(url + "/v1/completions", json=body, timeout=30)
    assert capsys.readouterr().err == ""


def test_classify_on_a_classifier(tmp_path):
    path = tiny_checkpoint(tmp_path, "bert-tiny", "bert", max_positions=32, head="none", pair_head=False,
                           classifier="sequence", label_names=["neg", "pos"], pooler=True)
    texts = ["the cat sat", "the dog looked at the sky"]
    expected = plmlab.pipeline("text-classification", model=str(path))(texts)
    with running_server(path) as (url, _):
        r = httpx.post(url + "/v1/classify", json={"input": texts}, timeout=30)
        assert r.status_code == 200 and r.json()["data"] == expected
        r = httpx.post(url + "/v1/fill-mask", json={"input": "the [MASK]"})
        assert r.status_code == 400 and "cannot do fill-mask" in r.json()["error"]["message"]
