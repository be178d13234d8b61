"""The playground at /: one self-contained page (no CDN, no build step), and -- where Debian's
`chromium` is installed -- driven in headless Chromium: the prompt filled in, Run pressed, the
streamed tokens on the page equal to the model's greedy continuation, a screenshot taken; in
chat, Enter sends (Shift+Enter types a new line) and New chat forgets the conversation; the
sampling controls hide where a tab does not generate (through the DevTools protocol: tests/cdp.py)."""

from __future__ import annotations

import base64
import json
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


ENTER = dict(key="Enter", code="Enter", windowsVirtualKeyCode=13, text="\r")
SHOWN = 'document.getElementById("{}").offsetParent !== null'  # laid out: neither it nor a parent is hidden
IDLE = '!document.getElementById("run").disabled'  # no request running


def chat_checkpoint(root):
    """gpt-tiny whose tokenizer carries a chat template (tokenizer_config.json's, as transformers keeps it)."""
    path = tiny_checkpoint(root)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                               "{% if add_generation_prompt %}assistant:{% endif %}")
    (path / "tokenizer_config.json").write_text(json.dumps(config))
    return path


def _press(browser, key: dict, modifiers: int = 0) -> None:
    for kind in ("keyDown", "keyUp"):
        browser.call("Input.dispatchKeyEvent", type=kind, modifiers=modifiers, **key)


def _type(browser, text: str) -> None:
    browser.evaluate('document.getElementById("prompt").focus()')
    browser.call("Input.insertText", text=text)


def test_chat_enter_sends_and_new_chat_forgets_in_headless_chromium(tmp_path):
    exe = _chromium()
    path = chat_checkpoint(tmp_path)
    text = 'document.getElementById("{}").{}'.format
    with running_server(path) as (url, _):
        browser = DevTools(exe, str(tmp_path / "profile"))
        try:
            browser.call("Page.navigate", url=f"{url}/?task=chat")
            browser.wait_for('document.body && document.body.dataset.done === "1"')
            assert browser.evaluate(SHOWN.format("new_chat")) and browser.evaluate(SHOWN.format("settings"))
            browser.evaluate('document.getElementById("max_tokens").value = "6"')  # two turns fit 64 positions
            _type(browser, "the cat")
            _press(browser, ENTER, modifiers=8)  # Shift+Enter: a new line, nothing sent
            assert browser.evaluate(text("prompt", "value")) == "the cat\n"
            assert browser.evaluate(text("output", "textContent")) == ""
            _type(browser, "sat")
            _press(browser, ENTER)  # Enter: sent
            first = browser.wait_for(f'{IDLE} && {text("output", "textContent")}')
            assert first.startswith("user: the cat\nsat\nassistant: ") and len(first) > len("user: the cat\nsat\n"
                                                                                              "assistant: ")
            assert browser.evaluate(text("prompt", "value")) == ""  # the box is free for the next message
            _type(browser, "a dog")
            _press(browser, ENTER)
            second = browser.wait_for(f'{IDLE} && {text("output", "textContent")}.includes("user: a dog")'
                                      f' && {text("output", "textContent")}')
            assert second.startswith(first + "\nuser: a dog\nassistant: ")  # the conversation goes on
            assert browser.evaluate(text("error", "textContent")) == "" and len(second) > len(first) + 24
            browser.evaluate('document.getElementById("new_chat").click()')
            assert browser.evaluate(text("output", "textContent")) == ""
            _type(browser, "a dog")
            _press(browser, ENTER)
            again = browser.wait_for(f'{IDLE} && {text("output", "textContent")}')
            error = browser.evaluate(text("error", "textContent"))
        finally:
            browser.close()
    assert error == "" and again.startswith("user: a dog\nassistant: ")  # forgotten: a conversation of one


def test_the_sampling_controls_hide_on_fill_mask_in_headless_chromium(gpt, tmp_path):
    exe = _chromium()
    bert = tiny_checkpoint(tmp_path, "bert-tiny", "bert", max_positions=32)
    browser = DevTools(exe, str(tmp_path / "profile"))
    try:
        seen = {}
        for name, path in (("completions", gpt), ("fill-mask", bert)):
            with running_server(path) as (url, _):
                browser.call("Page.navigate", url=f"{url}/")
                browser.wait_for('document.body && document.body.dataset.done === "1"')
                seen[name] = [browser.evaluate(SHOWN.format(e)) for e in ("settings", "run", "new_chat")]
    finally:
        browser.close()
    assert seen == {"completions": [True, True, False], "fill-mask": [False, True, False]}
