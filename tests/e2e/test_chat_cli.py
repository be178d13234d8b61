"""`plmlab chat` and the chat pipeline (pipelines/chat.py): a model taught one answer by SFT
gives it through a pipe and through the pipeline (streamed alike); the answer takes what the
context leaves, the history goes through the template and drops its oldest turns (saying so before
the answer) when it outgrows the context; a terminal gets readline's history; bad input is one line."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import subprocess
import sys
import time

import pytest
import torch

import plmlab
from plmlab.cli.chat import _command, _turn
from plmlab.errors import PlmlabError
from plmlab.finetune.sft import sft, sft_options
from plmlab.pipelines import load_model_and_tokenizer
from plmlab.pipelines.chat import Chat
from plmlab.tokenizers import train_tokenizer
from plmlab.tokenizers.chat import encode_chat

TEXTS = ["hi there, hello there.", "what does split do? it splits a string."] * 30


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    """gpt-tiny fine-tuned on one exchange: "hi" -> "hello there."."""
    root = tmp_path_factory.mktemp("chat")
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("gpt-tiny"), root / "base", tokenizer=train_tokenizer(TEXTS, "gpt2", 300))
    data = root / "data.jsonl"
    data.write_text(json.dumps({"prompt": "hi", "response": "hello there."}) + "\n")
    sft(sft_options(str(root / "base"), str(root / "run"), str(data), epochs=40, batch_size=1, lr=3e-3, warmup=0.0,
                    progress="none"), log=lambda line: None)
    return root


def run_cli(*args, stdin=""):
    return subprocess.run([sys.executable, "-m", "plmlab", *map(str, args)], input=stdin, capture_output=True,
                          text=True)


def test_a_pipe_gets_one_answer(taught):
    result = run_cli("chat", "--model", taught / "run", "--greedy", "--max-new-tokens", 12, stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello there.\n"


def test_the_default_max_new_tokens_fits_a_context_of_128(taught):
    """gpt-tiny has 128 positions: the default 128 new tokens are capped to what the prompt leaves
    (the pipe and the pipeline alike), as serve caps max_tokens."""
    result = run_cli("chat", "--model", taught / "run", "--greedy", stdin="hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello there.\n"
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    chat = Chat(model, tok, do_sample=False)
    assert chat("hi")["text"] == "hello there."
    question = [{"role": "user", "content": "what does split do? " * 6}]
    ids, max_new, dropped = chat._fit(question, 128)
    assert 32 < len(ids) < 96 and max_new == 128 - len(ids) and dropped == 0
    assert chat._fit(question, 10)[1] == 10  # a smaller max_new_tokens stands


def test_the_history_stays_while_the_answer_gets_a_quarter_of_the_context(taught):
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    chat = Chat(model, tok, do_sample=False)
    history = []
    while len(encode_chat(tok, history + [{"role": "user", "content": "hi"}], add_generation_prompt=True)) <= 96:
        history += [{"role": "user", "content": "what does split do?"}, {"role": "assistant", "content": "it splits"}]
    kept = history[2:]  # one exchange fewer: the answer would get at least 32 positions
    ids, max_new, dropped = chat._fit(kept + [{"role": "user", "content": "hi"}], 128)
    assert dropped == 0 and 32 <= max_new == 128 - len(ids) < 128
    ids, max_new, dropped = chat._fit(history + [{"role": "user", "content": "hi"}], 128)
    assert dropped >= 1 and max_new == 128 - len(ids) >= 32


def test_the_drop_note_comes_before_the_answer(taught, monkeypatch):
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    session = Chat(model, tok, max_new_tokens=40, do_sample=False).session()
    session.history = [{"role": "user", "content": "what does split do? " * 5},
                       {"role": "assistant", "content": "it splits a string. " * 5}]
    both = io.StringIO()  # stdout and stderr as a terminal shows them: one stream, in order
    monkeypatch.setattr(sys, "stdout", both)
    monkeypatch.setattr(sys, "stderr", both)
    _turn(session, "hi")
    assert both.getvalue() == ("plmlab: the conversation outgrew the context: dropped its 2 oldest turn(s)\n"
                               "hello there.\n")


def test_a_terminal_recalls_the_previous_line_with_the_up_arrow(taught):
    """On a terminal, input() goes through readline: the up arrow brings back an earlier line
    ("hi", and the taught answer again) instead of reading the escape `^[[A` as the line."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-m", "plmlab", "chat", "--model", str(taught / "run"), "--greedy",
                             "--max-new-tokens", "12"], stdin=follower, stdout=follower, stderr=follower,
                            env=env, close_fds=True)
    os.close(follower)
    try:
        seen = _read_until(leader, b"> ", b"")
        for line in (b"hi", b"/reset", b"\x1b[A\x1b[A"):  # the up arrow twice: back past /reset to "hi"
            os.write(leader, line + b"\r")
            seen = _read_until(leader, b"> ", seen)
        os.write(leader, b"/exit\r")
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert text.count("hello there.") == 2 and "^[[A" not in text, text  # readline redraws the recalled line


def _read_until(fd: int, end: bytes, seen: bytes, timeout: float = 60.0) -> bytes:
    """Read the terminal until one more `end` than `seen` had (the next prompt)."""
    deadline, want = time.monotonic() + timeout, seen.count(end) + 1
    while seen.count(end) < want:
        assert time.monotonic() < deadline, seen.decode(errors="replace")
        if select.select([fd], [], [], 0.5)[0]:
            seen += os.read(fd, 4096)
    return seen


def test_the_pipeline_replies_streams_and_keeps_the_history(taught):
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    chat = Chat(model, tok, max_new_tokens=12, do_sample=False)
    assert chat("hi")["text"] == "hello there."
    assert chat([{"role": "user", "content": "hi"}])["text"] == "hello there."
    written = []
    session = chat.session(system="Be brief.")
    first = session.send("hi", write=written.append)
    assert "".join(written) == first["text"] and first["dropped"] == 0
    session.send("hi again")
    assert [m["role"] for m in session.messages()] == ["system", "user", "assistant", "user", "assistant"]
    session.reset()
    assert session.messages() == [{"role": "system", "content": "Be brief."}]


def test_an_outgrown_history_drops_its_oldest_turns(taught):
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    session = Chat(model, tok, max_new_tokens=40, do_sample=False).session(system="sys")
    for _ in range(6):  # each exchange is ~15 tokens; 128 positions - 40 new tokens leave room for ~5
        result = session.send("what does split do? hi there")
    assert result["dropped"] > 0 and session.messages()[0]["role"] == "system"
    assert len(session.messages()) < 13
    before = list(session.history)
    with pytest.raises(PlmlabError, match="leaves no room for an answer in the model's context of 128"):
        session.send("hi " * 200)
    assert session.history == before  # a refused turn changes nothing


def test_commands_and_bad_input(taught, tmp_path, capsys):
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    session = Chat(model, tok, max_new_tokens=4).session()
    session.history = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]
    assert _command(session, "/system Be brief.") and session.system == "Be brief."
    assert _command(session, "/reset") and session.history == []
    assert _command(session, "/nope") and "unknown command /nope" in capsys.readouterr().err
    assert not _command(session, "/exit")
    torch.manual_seed(0)
    plmlab.save_pretrained(plmlab.build_model("bert-tiny"), tmp_path / "bert",
                           tokenizer=train_tokenizer(TEXTS, "bert", 300))
    result = run_cli("chat", "--model", tmp_path / "bert", stdin="hi\n")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "cannot chat" in result.stderr
    empty = run_cli("chat", "--model", taught / "run", stdin="")
    assert empty.returncode == 2 and "stdin is empty" in empty.stderr


def test_non_utf8_stdin_and_a_failing_template_are_one_line(taught, tmp_path):
    for errors in ("surrogateescape", "strict"):  # how the C locale and a UTF-8 one decode stdin
        binary = subprocess.run([sys.executable, "-m", "plmlab", "chat", "--model", str(taught / "run")],
                                input=b"hi \xff\xfe\n", capture_output=True,
                                env={**os.environ, "PYTHONIOENCODING": f"utf-8:{errors}"})
        assert binary.returncode == 2 and binary.stderr.count(b"\n") == 1 and b"not UTF-8" in binary.stderr, errors
    model, tok = load_model_and_tokenizer(taught / "run" / "final")
    config = json.loads((taught / "run" / "final" / "tokenizer_config.json").read_text())
    broken = tmp_path / "broken"
    plmlab.save_pretrained(model, broken, tokenizer=tok)
    config["chat_template"] = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
    (broken / "tokenizer_config.json").write_text(json.dumps(config))
    looping = run_cli("chat", "--model", broken, "--greedy", stdin="hi\n")
    assert looping.returncode == 2 and looping.stderr.count("\n") == 1, looping.stderr
    assert "did not finish rendering within 2 s" in looping.stderr
