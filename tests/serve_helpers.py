"""Shared by the serve tests: tiny random checkpoints and a real server on 127.0.0.1 (an
ephemeral port) in a thread, stopped by the test that started it."""

from __future__ import annotations

import contextlib
import threading
import time

import torch

import plmlab
from plmlab.tokenizers import train_tokenizer

TEXTS = [f"the {a} {b} sat on the {c} mat and looked at the {d} sky" for a in ("cat", "dog", "bird")
         for b in ("small", "big", "old") for c in ("red", "blue") for d in ("grey", "clear")]


def tiny_checkpoint(root, preset: str = "gpt-tiny", style: str = "gpt2", max_positions: int = 64, **overrides):
    """A random `preset` model with a tokenizer of `style` trained on TEXTS, saved under root/preset."""
    tok = train_tokenizer(TEXTS, style, vocab_size=300 if style != "t5" else 400, min_frequency=1)
    torch.manual_seed(0)
    model = plmlab.build_model(preset, vocab_size=tok.vocab_size, max_positions=max_positions, **overrides)
    path = root / preset
    plmlab.save_pretrained(model, path, tokenizer=tok)
    return path


@contextlib.contextmanager
def running_server(model_dir, **options):
    """(base url, app state) of a server on 127.0.0.1:EPHEMERAL; stopped and joined on exit. Its
    access log is off unless asked for (a line printed after a test's last response would land
    outside that test's captured output)."""
    from plmlab.serve import ServedModel, ServeOptions, bind, create_app, make_server

    opts = ServeOptions(**{"access_log": False, **options})
    app = create_app(ServedModel.load(model_dir), opts)
    sock = bind("127.0.0.1", 0)
    server = make_server(app, request_timeout=opts.request_timeout)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app.app.state.plmlab
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def slowed(state, seconds: float) -> list:
    """Make each forward pass of the served model take `seconds` longer (so that requests overlap
    and deadlines pass mid-decode, whatever the machine's speed); returns the list that records
    each call, to count the decode steps a request really took."""
    model, calls = state.served.model, []
    forward = model.forward

    def slow(*args, **kwargs):
        calls.append(time.monotonic())
        time.sleep(seconds)
        return forward(*args, **kwargs)

    model.forward = slow
    return calls


def wait_idle(state, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while state.engine.running or state.engine.waiting:
        assert time.monotonic() < deadline, "the worker is still busy"
        time.sleep(0.01)
