"""plmlab serve under abuse: >= 1,000 malformed requests (all 4xx, none 5xx, the server still
healthy and right afterwards), more concurrent clients than the queue holds (429 + Retry-After,
every accepted request completes), a deadline (504, the slot freed), a client that leaves
mid-stream (its slot freed). Every loop is bounded in count and time."""

from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

import plmlab
from plmlab.tokenizers import load_tokenizer

from serve_helpers import running_server, slowed, tiny_checkpoint, wait_idle

VALID = {"prompt": "the cat", "max_tokens": 4, "temperature": 0}
# field -> values that are always wrong for it (type, range, NaN spelled as a string, ...)
BAD = {
    "max_tokens": [0, -5, 1.5, "16", True, 10**9, 10**30, [], {}],
    "temperature": [-0.1, 2.01, "NaN", "0.5", False, [1], 1e400],
    "top_p": [0, 0.0, 1.1, -1, "1", None and 0 or {}],
    "top_k": [-2, 1.5, "3", True],
    "n": [0, 17, -1, 2.5, "2"],
    "stop": ["", [""], ["a", "b", "c", "d", "e"], [1], 5, {"s": 1}, ["x", None]],
    "prompt": ["", [], [[]], [-1], [99999], [1, "a"], 5, {"p": 1}, True, ["\ud800"], "x" * 2000],
    "seed": [1.5, "1", [], 2**70],
    "logprobs": [-1, 6, 2.5, "1"],
    "echo": ["yes", 1, []],
    "stream": ["true", 0, {}],
    "presence_penalty": [1.0, 3, "0"],
    "stream_options": [1, "x", {"bogus": True}, {"include_usage": "yes"}],
    "model": [5, [], "no-such-model"],
    "user": [1, []],
}


def malformed(rng: random.Random) -> tuple[str, str, bytes, dict]:
    """(method, path, body, headers) of one request that a server must refuse with a 4xx."""
    kind = rng.randrange(9)
    headers = {"content-type": "application/json"}
    if kind == 0:  # a field with a wrong value
        field = rng.choice(list(BAD))
        return "POST", "/v1/completions", json.dumps({**VALID, field: rng.choice(BAD[field])}).encode(), headers
    if kind == 1:  # random bytes (mostly not UTF-8, never a JSON object)
        return "POST", "/v1/completions", bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40))), headers
    if kind == 2:  # truncated JSON
        text = json.dumps({**VALID, "stop": ["\n"]})
        return "POST", "/v1/completions", text[: rng.randrange(len(text) - 1)].encode(), headers
    if kind == 3:  # JSON that is not an object, or NaN / Infinity literals
        body = rng.choice(["[]", "1", '"x"', "null", "true", '{"prompt": "x", "temperature": NaN}',
                           '{"prompt": "x", "top_p": Infinity}', '[{"prompt": "x"}]'])
        return "POST", rng.choice(["/v1/completions", "/v1/chat/completions"]), body.encode(), headers
    if kind == 4:  # unknown fields, missing required ones
        body = rng.choice([{**VALID, f"x{rng.randrange(99)}": 1}, {"max_tokens": 3}, {**VALID, "best_of": 2},
                           {"messages": []}, {"messages": [{"role": "user"}]}, {"messages": "hi"},
                           {"messages": [{"role": "wizard", "content": "hi"}]}])
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        return "POST", path, json.dumps(body).encode(), headers
    if kind == 5:  # invalid UTF-8 inside an otherwise valid body
        raw = json.dumps(VALID).encode()
        at = rng.randrange(len(raw))
        return "POST", "/v1/completions", raw[:at] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80"]) + raw[at:], headers
    if kind == 6:  # tasks this decoder cannot do, and chat without a template
        path = rng.choice(["/v1/fill-mask", "/v1/fill-blanks", "/v1/text2text", "/v1/classify", "/v1/chat/completions"])
        body = {"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"input": "the [MASK]"}
        return "POST", path, json.dumps(body).encode(), headers
    if kind == 7:  # wrong method, unknown path
        return rng.choice([("GET", "/v1/completions"), ("PUT", "/v1/models"), ("POST", "/v2/everything"),
                           ("DELETE", "/health")]) + (b"", headers)
    return "POST", "/v1/completions", b'{"prompt": "' + b"a" * 70_000 + b'"}', headers  # over max_body


def test_a_thousand_malformed_requests_are_4xx_and_the_server_keeps_serving(tmp_path):
    path = tiny_checkpoint(tmp_path)
    model, tok = plmlab.load_pretrained(path), load_tokenizer(path)
    expected = tok.decode(plmlab.generate(model, [tok.encode("the cat")], max_new_tokens=4, eos_token_id=None)[0])
    rng = random.Random(0)
    statuses: dict[int, int] = {}
    with running_server(path, max_body=64 * 1024) as (url, _):
        with httpx.Client(base_url=url, timeout=10) as c:
            start = time.monotonic()
            for _ in range(1200):
                method, where, body, headers = malformed(rng)
                r = c.request(method, where, content=body, headers=headers)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                assert 400 <= r.status_code < 500, (where, body[:200], r.status_code, r.text)
                if where.startswith("/v1") and r.status_code != 405:
                    error = r.json()["error"]
                    assert set(error) == {"message", "type", "param", "code"} and error["message"]
                assert time.monotonic() - start < 120
            assert c.get("/health").status_code == 200
            r = c.post("/v1/completions", json=VALID)
            assert r.status_code == 200 and r.json()["choices"][0]["text"] == expected
    assert set(statuses) >= {400, 404, 405, 413}


def test_over_long_prompt_names_both_numbers(tmp_path):
    path = tiny_checkpoint(tmp_path)
    with running_server(path) as (url, _):
        r = httpx.post(url + "/v1/completions", json={"prompt": "the cat sat", "max_tokens": 62})
    message = r.json()["error"]["message"]
    assert r.status_code == 400 and "max_tokens is 62" in message and "context of 64" in message


def test_more_clients_than_the_queue_holds_get_429_and_the_rest_complete(tmp_path):
    path = tiny_checkpoint(tmp_path, max_positions=128)
    model, tok = plmlab.load_pretrained(path), load_tokenizer(path)
    expected = tok.decode(plmlab.generate(model, [tok.encode("the cat")], max_new_tokens=20, eos_token_id=None)[0])
    clients = 12
    with running_server(path, max_queue=2, max_batch=2, batch_wait=0.0) as (url, state):
        slowed(state, 0.005)
        barrier = threading.Barrier(clients)

        def ask(_):
            with httpx.Client(base_url=url, timeout=30) as c:
                barrier.wait(10)
                return c.post("/v1/completions", json={**VALID, "max_tokens": 20})

        with ThreadPoolExecutor(clients) as pool:
            answers = list(pool.map(ask, range(clients)))
        wait_idle(state)
    codes = [r.status_code for r in answers]
    assert set(codes) <= {200, 429} and codes.count(429) >= 1 and codes.count(200) >= 2
    for r in answers:
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1 and r.json()["error"]["code"] == "rate_limit_exceeded"
        else:
            assert r.json()["choices"][0]["text"] == expected


def test_a_deadline_answers_504_and_frees_the_slot(tmp_path):
    path = tiny_checkpoint(tmp_path, max_positions=512)
    with running_server(path, timeout=0.5) as (url, state):
        calls = slowed(state, 0.01)
        r = httpx.post(url + "/v1/completions", json={**VALID, "max_tokens": 400}, timeout=30)
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        wait_idle(state)
        assert len(calls) < 200  # the decode loop stopped soon after the deadline, not at 400 tokens
        r = httpx.post(url + "/v1/completions", json=VALID, timeout=30)
        assert r.status_code == 200


def test_a_client_that_leaves_mid_stream_frees_its_slot(tmp_path):
    path = tiny_checkpoint(tmp_path, max_positions=512)
    with running_server(path) as (url, state):
        calls = slowed(state, 0.01)
        with httpx.Client(base_url=url, timeout=30) as c:
            with c.stream("POST", "/v1/completions", json={**VALID, "max_tokens": 400, "stream": True}) as r:
                lines = r.iter_lines()
                got = [line for line, _ in zip(lines, range(6)) if line.startswith("data:")]
            assert len(got) >= 2
        wait_idle(state)
        assert len(calls) < 200  # stopped once the next token found nobody to send it to
        assert httpx.post(url + "/v1/completions", json=VALID, timeout=30).status_code == 200
