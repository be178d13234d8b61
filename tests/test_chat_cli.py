"""`plmlab chat` and the chat pipeline (pipelines/chat.py): a model taught one answer by SFT
gives it through a pipe and through the pipeline (streamed alike); the history goes through the
template and drops its oldest turns when it outgrows the context; bad input is one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import plmlab
from plmlab.cli.chat import _command
from plmlab.errors import PlmlabError
from plmlab.finetune.sft import sft, sft_options
from plmlab.pipelines import load_model_and_tokenizer
from plmlab.pipelines.chat import Chat
from plmlab.tokenizers import train_tokenizer

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
    with pytest.raises(PlmlabError, match="more than the model's context"):
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
