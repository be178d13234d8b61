"""plmlab serve, /v1/fill-blanks: a real server on 127.0.0.1 with a tiny random GLM (glm-tiny,
2-D positions) gives what `plmlab.pipeline("fill-blanks")` gives (greedy); bad input is a 4xx
with OpenAI's error body; the card lists the task; the playground has its tab (and, where
Debian's `chromium` is installed, shows the fills highlighted)."""

from __future__ import annotations

import json
import shutil
import urllib.parse

import httpx
import pytest

import plmlab

from serve_helpers import running_server, tiny_checkpoint

TEXTS = ["the cat [MASK] on the mat", "a [sMASK] dog looked at the [MASK] sky", "the old bird [gMASK]"]


@pytest.fixture(scope="module")
def glm(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("fill-blanks"), "glm-tiny", "glm")


@pytest.fixture(scope="module")
def server(glm):
    with running_server(glm) as (url, state):
        yield url, state


def test_fill_blanks_equals_the_pipeline_greedy(glm, server):
    url, _ = server
    expected = plmlab.pipeline("fill-blanks", model=str(glm), max_new_tokens=6)(TEXTS)
    r = httpx.post(url + "/v1/fill-blanks", json={"input": TEXTS, "max_tokens": 6}, timeout=30)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list" and body["model"] == "glm-tiny"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert [(d["text"], d["blanks"]) for d in body["data"]] == [(e["text"], e["blanks"]) for e in expected]
    assert [d["tokens"] for d in body["data"]] == [sum(map(len, e["blank_ids"])) for e in expected]
    assert len(body["data"][1]["blanks"]) == 2  # every blank of a text, left to right
    one = httpx.post(url + "/v1/fill-blanks", json={"input": TEXTS[0], "max_tokens": 6, "temperature": 0}, timeout=30)
    assert one.json()["data"][0]["text"] == expected[0]["text"]


def test_seeded_sampling_is_repeatable(server):
    url, _ = server
    body = {"input": TEXTS[1], "max_tokens": 5, "temperature": 1.0, "top_p": 0.9, "seed": 3}
    a, b = (httpx.post(url + "/v1/fill-blanks", json=body, timeout=30) for _ in range(2))
    assert a.status_code == b.status_code == 200 and a.json()["data"] == b.json()["data"]


@pytest.mark.parametrize("body, param, code", [
    ({"input": "no blank here"}, "input", "no_blank"),
    ({"input": ["the [MASK]", "no blank"]}, "input", "no_blank"),
    ({"input": 3}, "input", "invalid_type"),
    ({"input": ["the [MASK]", 3]}, "input", "invalid_type"),
    ({"input": []}, "input", "invalid_value"),
    ({"input": ""}, "input", "empty_prompt"),
    ({}, "input", "missing_required_parameter"),
    ({"input": "the [MASK]", "max_tokens": 0}, "max_tokens", "invalid_value"),
    ({"input": "the [MASK]", "max_tokens": "5"}, "max_tokens", "invalid_type"),
    ({"input": "the [MASK]", "max_tokens": True}, "max_tokens", "invalid_type"),
    ({"input": "the [MASK]", "max_tokens": 64}, "input", "context_length_exceeded"),
    ({"input": "the [MASK]", "temperature": 3}, "temperature", "invalid_value"),
    ({"input": "the [MASK]", "top_p": 0}, "top_p", "invalid_value"),
    ({"input": "the [MASK]", "seed": 1.5}, "seed", "invalid_type"),
    ({"input": "the [MASK]", "top_k_typo": 1}, "top_k_typo", "unknown_parameter"),
])
def test_bad_input_is_400_with_the_error_body(server, body, param, code):
    url, _ = server
    r = httpx.post(url + "/v1/fill-blanks", json=body, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == code
    assert error["message"]


def test_an_unknown_model_is_404(server):
    url, _ = server
    r = httpx.post(url + "/v1/fill-blanks", json={"input": "the [MASK]", "model": "glm-9"}, timeout=30)
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"


def test_card_metrics_and_playground(server):
    url, _ = server
    card = httpx.get(url + "/v1/models").json()["data"][0]
    assert card["tasks"][0] == "completions" and "fill-blanks" in card["tasks"]
    httpx.post(url + "/v1/fill-blanks", json={"input": "the [MASK]", "max_tokens": 2}, timeout=30)
    text = httpx.get(url + "/metrics").text
    assert 'plmlab_requests_total{endpoint="/v1/fill-blanks",status="200"}' in text
    assert 'plmlab_requests_total{endpoint="/v1/fill-blanks",status="400"}' in text
    page = httpx.get(url + "/").text
    assert "/v1/fill-blanks" in page and "Fill blanks" in page


def test_a_model_without_2d_positions_cannot_fill_blanks(tmp_path):
    gpt = tiny_checkpoint(tmp_path)
    with running_server(gpt) as (url, _):
        assert "fill-blanks" not in httpx.get(url + "/v1/models").json()["data"][0]["tasks"]
        r = httpx.post(url + "/v1/fill-blanks", json={"input": "the [MASK]"}, timeout=30)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["code"] == "unsupported_task" and "cannot do fill-blanks" in error["message"]


def test_the_playground_highlights_the_fills_in_headless_chromium(glm, server, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("the headless-browser test needs Debian's `chromium` package (.ci/run installs it)")
    from cdp import DevTools

    url, _ = server
    expected = plmlab.pipeline("fill-blanks", model=str(glm), max_new_tokens=32)(TEXTS[0])
    query = urllib.parse.urlencode({"task": "fill-blanks", "prompt": TEXTS[0], "run": "1"})
    browser = DevTools(exe, str(tmp_path / "profile"))
    try:
        browser.call("Page.navigate", url=f"{url}/?{query}")
        browser.wait_for('document.body && document.body.dataset.done === "1"')
        shown = browser.evaluate('document.getElementById("output").textContent')
        marks = browser.evaluate('JSON.stringify([...document.querySelectorAll("#output mark.fill")]'
                                 '.map((m) => m.textContent))')
        error = browser.evaluate('document.getElementById("error").textContent')
    finally:
        browser.close()
    assert error == "" and shown == expected["text"]
    assert json.loads(marks) == [b for b in expected["blanks"] if b] != []  # each fill marked
