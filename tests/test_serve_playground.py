"""The playground at /: one self-contained page (no CDN, no build step), and -- where Debian's
`chromium` is installed -- driven in headless Chromium: the prompt filled in, Run pressed, the
streamed tokens on the page equal to the model's greedy continuation, a screenshot taken
(through the DevTools protocol: tests/cdp.py)."""

from __future__ import annotations

import base64
import re
import shutil

import httpx
import pytest

import plmlab
from plmlab.tokenizers import load_tokenizer

from cdp import DevTools
from serve_helpers import running_server, tiny_checkpoint


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("playground"))


def test_the_playground_is_one_self_contained_page(gpt):
    with running_server(gpt) as (url, _):
        r = httpx.get(url + "/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", page)  # nothing fetched from elsewhere
    for endpoint in ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/fill-mask", "/v1/fill-blanks",
                     "/v1/text2text"):
        assert endpoint in page


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("the headless-browser test needs Debian's `chromium` package (the `chromium` command is absent; "
                    ".ci/run installs it)")
    return exe


def test_the_playground_streams_a_completion_in_headless_chromium(gpt, tmp_path):
    exe = _chromium()
    model, tok = plmlab.load_pretrained(gpt), load_tokenizer(gpt)
    expected = tok.decode(plmlab.generate(model, [tok.encode("the cat")], max_new_tokens=32, eos_token_id=None)[0])
    with running_server(gpt) as (url, _):
        browser = DevTools(exe, str(tmp_path / "profile"))
        try:
            browser.call("Page.navigate", url=f"{url}/")
            browser.wait_for('document.body && document.body.dataset.done === "1"')  # the card and tabs loaded
            browser.evaluate('document.getElementById("prompt").focus()')
            browser.call("Input.insertText", text="the cat")  # typed, as a user would
            browser.evaluate('document.getElementById("run").click()')
            shown = browser.wait_for(f'(() => {{ const g = document.getElementById("generated");'
                                     f' return g && g.textContent.length >= {len(expected)} && g.textContent; }})()')
            error = browser.evaluate('document.getElementById("error").textContent')
            shot = base64.b64decode(browser.call("Page.captureScreenshot", format="png")["data"])
        finally:
            browser.close()
    assert error == "" and shown == expected  # the streamed tokens on the page are the model's greedy continuation
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "playground.png").write_bytes(shot)
