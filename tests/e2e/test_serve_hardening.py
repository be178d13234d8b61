"""plmlab serve against a hostile or careless client: the API key (401 with OpenAI's body, /health
and the playground open), the Host and Origin policy (DNS rebinding, cross-origin "simple" POSTs,
CORS for allowed origins), request work off the event loop (/health answers within 1 s while ~1 MB
requests are refused; a full Prep pool is 429), clients that hang up (queued, running, streaming,
mid-upload: their jobs never run or stop, their slots are freed), the request read timeout
(headers sent a byte at a time: 408, the connection closed), `--max-batch` per request, and the
warning when bound off loopback without a key. Every wait is bounded."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from plmlab.errors import PlmlabError
from plmlab.serve import ServeOptions

from serve_helpers import running_server, slowed, tiny_checkpoint, wait_idle

VALID = {"prompt": "the cat", "max_tokens": 4, "temperature": 0}
KEY = "sk-test-0123456789"


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("hardening"), max_positions=512)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- the API key ---------------------------------------------------------------------------------

def test_the_api_key_is_required_on_v1_and_metrics_but_not_on_health_and_the_playground(gpt):
    with running_server(gpt, api_key=KEY) as (url, state), httpx.Client(base_url=url, timeout=30) as c:
        for headers in ({}, {"authorization": "Bearer sk-wrong"}, {"authorization": KEY},
                        {"authorization": f"Basic {KEY}"}, {"authorization": f"Bearer {KEY}x"}):
            r = c.post("/v1/completions", json=VALID, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
            assert r.json() == {"error": {"message": r.json()["error"]["message"], "type": "invalid_request_error",
                                          "param": None, "code": "invalid_api_key"}}
        for path in ("/v1/models", "/metrics", "/v1/nothing-here"):
            assert c.get(path).status_code == 401
        assert state.metrics.prompt_tokens.samples() == ["plmlab_prompt_tokens_total 0"]  # nothing reached the model
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        good = {"authorization": f"Bearer {KEY}"}
        assert c.post("/v1/completions", json=VALID, headers=good).status_code == 200
        assert c.get("/v1/models", headers={"authorization": f"bearer {KEY}"}).status_code == 200


def test_the_key_comes_from_the_environment_and_the_playground_asks_for_it(gpt, monkeypatch):
    from plmlab.cli import build_parser

    monkeypatch.setenv("PLMLAB_API_KEY", KEY)
    assert build_parser().parse_args(["serve", "--model", "m"]).api_key == KEY
    assert build_parser().parse_args(["serve", "--model", "m", "--api-key", "other"]).api_key == "other"
    monkeypatch.setenv("PLMLAB_API_KEY", "")
    assert build_parser().parse_args(["serve", "--model", "m"]).api_key is None
    for bad in ("", "two words", "caf\u00e9", "tab\tkey"):  # `--api-key "$UNSET"` must not serve everyone
        with pytest.raises(PlmlabError, match="API key must be"):
            ServeOptions(api_key=bad)
    with running_server(gpt, api_key=KEY) as (url, _):
        page = httpx.get(url + "/").text
    assert 'id="api_key"' in page and "Bearer ${key}" in page


def test_a_warning_when_listening_off_loopback_without_a_key(gpt):
    proc = subprocess.Popen([sys.executable, "-m", "plmlab", "serve", "--model", str(gpt), "--host", "0.0.0.0",
                             "--port", "0"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PLMLAB_API_KEY": ""})
    try:
        warning, serving = proc.stderr.readline(), proc.stderr.readline()
        assert "warning: listening on 0.0.0.0" in warning and "--api-key" in warning
        port = int(re.search(r":(\d+)\s*$", serving).group(1))
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=30).status_code == 200
    finally:
        proc.terminate()
        proc.wait(60)


# --- Host and Origin -------------------------------------------------------------------------------

def test_a_foreign_host_is_refused_and_ip_literals_localhost_and_allowed_names_pass(gpt):
    with running_server(gpt, allowed_hosts=("serve.lab.internal",)) as (url, state):
        port = _port(url)
        with httpx.Client(base_url=url, timeout=30) as c:
            for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "localhost.evil.example"):
                r = c.post("/v1/completions", json=VALID, headers={"host": host})
                assert r.status_code == 421 and r.json()["error"]["code"] == "host_not_allowed", host
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "10.1.2.3",
                         f"serve.lab.internal:{port}", "serve.lab.internal."):
                assert c.post("/v1/completions", json=VALID, headers={"host": host}).status_code == 200, host
    with running_server(gpt, allowed_hosts=("*",)) as (url, _):
        assert httpx.get(url + "/health", headers={"host": "anything.example"}).status_code == 200


def test_cross_origin_posts_are_refused_text_plain_included_and_same_origin_passes(gpt):
    with running_server(gpt) as (url, state), httpx.Client(base_url=url, timeout=30) as c:
        import json

        simple = {"content-type": "text/plain", "origin": "http://evil.example"}  # no preflight in a browser
        r = c.post("/v1/completions", content=json.dumps(VALID), headers=simple)
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"
        assert "access-control-allow-origin" not in r.headers
        assert c.options("/v1/completions", headers={"origin": "http://evil.example",
                                                     "access-control-request-method": "POST"}).status_code == 403
        assert c.post("/v1/completions", json=VALID, headers={"origin": "null"}).status_code == 403
        assert state.metrics.prompt_tokens.samples() == ["plmlab_prompt_tokens_total 0"]
        same = c.post("/v1/completions", json=VALID, headers={"origin": url})  # the playground's own page
        assert same.status_code == 200 and "access-control-allow-origin" not in same.headers


def test_an_allowed_origin_gets_cors_and_its_preflight_answered(gpt):
    app = "https://app.example"
    with running_server(gpt, allow_origins=(app,), api_key=KEY) as (url, _), httpx.Client(base_url=url) as c:
        pre = c.options("/v1/completions", headers={"origin": app, "access-control-request-method": "POST",
                                                    "access-control-request-headers": "authorization, content-type"})
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == app
        assert "POST" in pre.headers["access-control-allow-methods"]
        assert "authorization" in pre.headers["access-control-allow-headers"]
        denied = c.post("/v1/completions", json=VALID, headers={"origin": app})  # no key: the page can read why
        assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == app
        r = c.post("/v1/completions", json=VALID, headers={"origin": app, "authorization": f"Bearer {KEY}"},
                   timeout=30)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == app
        assert r.headers["vary"] == "Origin"
        assert c.post("/v1/completions", json=VALID, headers={"origin": "https://other.example",
                                                              "authorization": f"Bearer {KEY}"}).status_code == 403


# --- work off the event loop -----------------------------------------------------------------------

def test_health_answers_within_a_second_while_megabyte_requests_are_refused(gpt):
    big = {"prompt": "the cat sat on the mat " * 40_000, "max_tokens": 4}  # ~0.9 MB, over the context: 400
    flooding, codes, health = threading.Event(), [], []
    with running_server(gpt) as (url, state):
        def flood(_):
            with httpx.Client(base_url=url, timeout=60) as c:
                while flooding.is_set():
                    codes.append(c.post("/v1/completions", json=big).status_code)

        flooding.set()
        with ThreadPoolExecutor(6) as pool:
            floods = [pool.submit(flood, i) for i in range(6)]
            try:
                with httpx.Client(base_url=url, timeout=30) as c:
                    end = time.monotonic() + 4
                    while time.monotonic() < end:
                        start = time.monotonic()
                        assert c.get("/health").status_code == 200
                        health.append(time.monotonic() - start)
                        time.sleep(0.05)
            finally:
                flooding.clear()
            for f in floods:
                f.result(60)
        assert codes and set(codes) <= {400, 429} and codes.count(400) >= 1
        assert max(health) < 1.0, f"/health took up to {max(health):.2f} s ({len(codes)} refused requests)"
        assert state.prep.taken == 0


def test_a_full_prep_pool_is_429_with_retry_after(gpt):
    with running_server(gpt, prep_threads=1, prep_queue=1) as (url, state):
        prompt_ids = state.served.prompt_ids
        state.served.prompt_ids = lambda p: (time.sleep(1.0), prompt_ids(p))[1]  # a slow tokeniser
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: httpx.post(url + "/v1/completions", json=VALID, timeout=30), range(4)))
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) >= 2 and codes.count(429) >= 1 and set(codes) <= {200, 429}, codes
        busy = next(r for r in answers if r.status_code == 429)
        assert busy.headers["retry-after"] == "1" and busy.json()["error"]["code"] == "rate_limit_exceeded"
        assert state.prep.taken == 0


# --- clients that hang up --------------------------------------------------------------------------

def _post_and_vanish(url: str, body: dict, after: float) -> None:
    """A whole-answer client that hangs up after `after` seconds without its answer."""
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(url + "/v1/completions", json=body, timeout=httpx.Timeout(30, read=after))


def test_abandoned_whole_answer_requests_are_dropped_queued_and_stopped_running(gpt):
    with running_server(gpt, batch_wait=0.0, max_batch=1) as (url, state):
        calls = slowed(state, 0.02)
        long = {**VALID, "max_tokens": 400}  # 400 steps: 8 s if it ran to the end
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda _: _post_and_vanish(url, long, 0.5), range(8)))  # 1 running, 7 queued
        deadline = time.monotonic() + 3
        while (state.engine.running or state.engine.depth()) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert state.engine.depth() == 0 and not state.engine.running  # freed within ~1 s of the hang-ups
        assert len(calls) < 150  # the running one stopped; the queued ones never ran
        start = time.monotonic()
        assert httpx.post(url + "/v1/completions", json=VALID, timeout=30).status_code == 200
        assert time.monotonic() - start < 2


def test_a_stream_abandoned_while_queued_never_runs(gpt):
    with running_server(gpt, batch_wait=0.0, max_batch=1) as (url, state):
        calls = slowed(state, 0.02)
        first = threading.Thread(target=_post_and_vanish, args=(url, {**VALID, "max_tokens": 60}, 0.3))
        first.start()
        time.sleep(0.1)  # the first holds the worker; the stream below waits behind it
        with httpx.Client(base_url=url, timeout=30) as c:
            with c.stream("POST", "/v1/completions", json={**VALID, "max_tokens": 400, "stream": True}) as r:
                assert r.status_code == 200  # headers only: no token yet
        first.join()
        wait_idle(state, 5)
        assert len(calls) < 100 and state.engine.depth() == 0


# --- the request read timeout ----------------------------------------------------------------------

def _raw(url: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(url)), timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    while chunk := sock.recv(4096):
        out += chunk
    return out


def test_headers_sent_a_byte_at_a_time_get_408_and_the_connection_closed(gpt):
    with running_server(gpt, request_timeout=1.0) as (url, _):
        sock, start = _raw(url), time.monotonic()
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
        try:
            for byte in request:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)  # 200+ bytes: 10 s if the server waited
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 408") and b"request_timeout" in answer
        assert time.monotonic() - start < 3
        sock.close()
        assert httpx.get(url + "/health", timeout=10).status_code == 200


def test_a_body_that_stalls_is_cut_off_and_keep_alive_still_works(gpt):
    with running_server(gpt, request_timeout=1.0) as (url, state):
        sock, start = _raw(url), time.monotonic()
        sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n" + b'{"prompt": "')
        answer = _read_all(sock)  # the server closes the connection
        assert answer.startswith(b"HTTP/1.1 408") and time.monotonic() - start < 3
        sock.close()
        with httpx.Client(base_url=url, timeout=10) as c:  # one connection, two requests, a pause between
            assert c.get("/health").status_code == 200
            time.sleep(0.5)
            assert c.get("/health").status_code == 200
        assert state.prep.taken == 0


# --- --max-batch per request -----------------------------------------------------------------------

def test_a_request_with_more_rows_than_max_batch_is_refused(gpt):
    with running_server(gpt, max_batch=4) as (url, state), httpx.Client(base_url=url, timeout=30) as c:
        r = c.post("/v1/completions", json={**VALID, "n": 5})
        assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_rows" and "--max-batch" in r.text
        r = c.post("/v1/completions", json={**VALID, "prompt": ["the cat", "the dog", "a"], "n": 2})
        assert r.status_code == 400
        r = c.post("/v1/completions", json={**VALID, "prompt": ["the cat", "the dog"], "n": 2})
        assert r.status_code == 200 and len(r.json()["choices"]) == 4
        assert state.engine.depth() == 0


# --- fault injection -------------------------------------------------------------------------------

def test_clients_that_vanish_mid_upload_mid_stream_and_queued_leave_a_working_server(gpt):
    with running_server(gpt, batch_wait=0.0, max_batch=2, request_timeout=2.0) as (url, state):
        calls = slowed(state, 0.01)
        uploads = []
        for _ in range(5):  # mid-upload: headers and half a body, then gone
            sock = _raw(url)
            sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 400\r\n\r\n"
                         + b'{"prompt": "' + b"a" * 150)
            uploads.append(sock)

        def mid_stream(_):
            with httpx.Client(base_url=url, timeout=30) as c:
                with c.stream("POST", "/v1/completions", json={**VALID, "max_tokens": 300, "stream": True}) as r:
                    for line, _ in zip(r.iter_lines(), range(4)):
                        pass

        with ThreadPoolExecutor(12) as pool:
            jobs = [pool.submit(mid_stream, i) for i in range(4)]
            jobs += [pool.submit(_post_and_vanish, url, {**VALID, "max_tokens": 300}, 0.4) for _ in range(8)]
            for sock in uploads:
                sock.close()
            for j in jobs:
                j.result(30)
        deadline = time.monotonic() + 5
        while (state.engine.running or state.engine.depth() or state.prep.taken) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not state.engine.running and state.engine.depth() == 0 and state.prep.taken == 0
        assert len(calls) < 12 * 300 // 4  # nowhere near every abandoned token was decoded
        with httpx.Client(base_url=url, timeout=30) as c:
            assert c.get("/health").json()["queue_depth"] == 0
            r = c.post("/v1/completions", json=VALID)
            assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4


# --- the playground with a key ---------------------------------------------------------------------

def test_the_playground_asks_for_the_key_and_then_generates_in_headless_chromium(gpt, tmp_path):
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("the headless-browser test needs Debian's `chromium` package")
    from cdp import DevTools

    with running_server(gpt, api_key=KEY) as (url, _):
        browser = DevTools(exe, str(tmp_path / "profile"))
        try:
            browser.call("Page.navigate", url=f"{url}/")
            browser.wait_for('!document.getElementById("key_row").hidden')  # /v1/models said 401
            browser.evaluate(f'document.getElementById("api_key").value = "{KEY}"')
            browser.evaluate('document.getElementById("use_key").click()')  # kept in the tab, the page reloads
            browser.wait_for('document.body && document.body.dataset.done === "1"')
            browser.evaluate('document.getElementById("prompt").value = "the cat"')
            browser.evaluate('document.getElementById("run").click()')
            shown = browser.wait_for('(() => { const g = document.getElementById("generated");'
                                     ' return g && g.textContent.length > 0 && g.textContent; })()')
            error = browser.evaluate('document.getElementById("error").textContent')
        finally:
            browser.close()
    assert error == "" and shown
