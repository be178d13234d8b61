"""The README's first-hour path, run as a new user runs it: every command of the blocks marked
`<!-- main-path:NAME -->`, in order, in one working directory, on the tiny presets.

Only what makes the suite fast changes: a `-mini` preset becomes its `-tiny` twin and the
training verbs get a few steps (FAST); `make pretrain` is the Makefile's own recipe, rewritten
alike; `source .venv/bin/activate` and `pip install` are the test environment's business. The run
directories, input files and every other flag are the README's, so a command that breaks when
followed in order (a run directory another section does not have, an example file that is not
shipped, a default that cannot work) fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- main-path:(\w+) -->\n```bash\n(.*?)```\n<!-- /main-path -->", re.S)
PLMLAB = [sys.executable, "-m", "plmlab"]
# Appended to the README's command: a few steps instead of minutes (nothing else changes).
FAST = {
    "pretrain": ["--max-steps", "4", "--eval-every", "2", "--eval-batches", "2", "--batch-size", "4",
                 "--threads", "1", "--sample-tokens", "8"],
    "finetune": ["--max-steps", "3"], "sft": ["--max-steps", "3"], "dpo": ["--max-steps", "2"],
    "distill": ["--max-steps", "2"],
}
SKIPPED = ("source", "pip")  # the venv and extras: the test runs in its own environment

pytestmark = pytest.mark.slow


def main_path(name: str) -> list[str]:
    """The commands of the README block `name`, continuation lines joined."""
    blocks = dict(BLOCK.findall(README.read_text(encoding="utf-8")))
    assert name in blocks, f"README.md has no <!-- main-path:{name} --> block"
    return [line for line in blocks[name].replace("\\\n", " ").splitlines() if line.strip()]


def make_pretrain() -> list[list[str]]:
    """`make pretrain`'s plmlab commands, from the Makefile's recipe."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = text.split("\npretrain:", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    commands = [shlex.split(line.strip().replace("$(PY) -m plmlab", "plmlab")) for line in recipe]
    assert [c[:2] for c in commands] == [["plmlab", "pretrain"]], commands
    return commands


def rewrite(words: list[str]) -> list[list[str]]:
    """One README command (shell words, no pipes) -> the commands the test runs for it."""
    if words[:2] == ["make", "pretrain"]:
        return [cmd for c in make_pretrain() for cmd in rewrite(c)]
    if words[0] in SKIPPED:
        return []
    assert words[0] == "plmlab", f"the main path runs plmlab commands only: {shlex.join(words)}"
    verb = words[1]
    words = [re.sub(r"^(\w+)-mini$", r"\1-tiny", w) if i and words[i - 1] == "--preset" else w
             for i, w in enumerate(words)]
    return [PLMLAB + words[1:] + FAST.get(verb, [])]


def shell_line(line: str) -> list[str]:
    """A README line as the shell lines to run (pipes kept), comments dropped."""
    words = shlex.split(line, comments=True)
    segments, current = [], []
    for w in words:
        if w == "|":
            segments.append(current)
            current = []
        else:
            current.append(w)
    segments.append(current)
    if len(segments) == 1:
        return [shlex.join(cmd) for cmd in rewrite(segments[0])]
    parts = [shlex.join(segments[0])] + [shlex.join(c) for seg in segments[1:] for c in rewrite(seg)]
    return [" | ".join(parts)]


def run(line: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{line}\nexit {done.returncode}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A user's checkout as far as the path needs it: examples/ beside an empty runs/."""
    cwd = tmp_path_factory.mktemp("checkout")
    (cwd / "examples").symlink_to(ROOT / "examples")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "PLMLAB_CACHE": os.environ.get("PLMLAB_CACHE")
           or str(tmp_path_factory.getbasetemp() / "cache")}
    return cwd, env


def test_the_decoder_path_runs_in_order(workdir):
    cwd, env = workdir
    outputs = [run(shell, cwd, env) for line in main_path("decoder") for shell in shell_line(line)]
    assert "next:" in outputs[0].stdout  # make pretrain says what to try next
    assert (cwd / "runs/gpt-mini-dpo/final/config.json").is_file()
    assert (cwd / "runs/gpt-mini/plots.png").is_file()
    chat = next(o for line, o in zip([s for l in main_path("decoder") for s in shell_line(l)], outputs)
                if "chat" in line)
    assert chat.stdout.strip()  # an answer


def test_the_served_model_answers_the_openai_snippet(workdir):
    """The serve block, then the README's Python snippet (the official openai client)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("openai")
    cwd, env = workdir
    if not (cwd / "runs/gpt-mini-dpo").is_dir():
        pytest.skip("needs the decoder path's runs (test_the_decoder_path_runs_in_order)")
    lines = [s for line in main_path("serve") for s in shell_line(line)]
    assert len(lines) == 1 and " serve " in lines[0] and "--port 8000" in lines[0]
    port = free_port()
    server = subprocess.Popen(["bash", "-c", "exec " + lines[0].replace("--port 8000", f"--port {port}")], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(port, server)
        snippet = README.read_text(encoding="utf-8").split("```python\n", 1)[1].split("```", 1)[0]
        snippet = snippet.replace("127.0.0.1:8000", f"127.0.0.1:{port}").replace(
            "client.chat.completions.create(", "reply = client.chat.completions.create(")
        scope: dict = {}
        exec(compile(snippet, "README.md", "exec"), scope)
        assert scope["reply"].choices[0].message.role == "assistant"
        assert scope["reply"].model == "gpt-mini-dpo"
    finally:
        server.terminate()
        server.wait(30)


def test_the_encoder_path_runs_in_order(workdir):
    cwd, env = workdir
    outputs = [run(shell, cwd, env) for line in main_path("encoder") for shell in shell_line(line)]
    assert "[MASK]" in outputs[1].stdout and outputs[1].stdout.count("\n") > 2  # fill-mask's predictions
    assert (cwd / "runs/bert-mini-merged/config.json").is_file()
    assert (cwd / "runs/bert-mini-distil/final/config.json").is_file()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"the server exited: {server.stderr.read()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError("the server did not answer /health")
