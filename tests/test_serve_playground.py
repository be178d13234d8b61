"""The playground at /: one self-contained page (no CDN, no build step), and -- where Debian's
`chromium` is installed -- driven in headless Chromium: the prompt filled in, Run pressed, the
streamed tokens on the page equal to the model's greedy continuation, a screenshot taken."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import urllib.parse

import httpx
import pytest

import plmlab
from plmlab.tokenizers import load_tokenizer

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
    for endpoint in ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/fill-mask", "/v1/text2text"):
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
    flags = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", f"--user-data-dir={tmp_path / 'c'}",
             "--virtual-time-budget=15000", "--window-size=1000,700"]
    with running_server(gpt) as (url, _):
        page = f"{url}/?{urllib.parse.urlencode({'prompt': 'the cat', 'task': 'completions', 'run': 1})}"
        dom = subprocess.run(flags + ["--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
        shot = tmp_path / "playground.png"
        subprocess.run(flags + [f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert 'data-done="1"' in dom
    generated = re.search(r'<span id="generated">(.*?)</span>', dom, re.S)
    assert generated and html.unescape(generated.group(1)) == expected
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
