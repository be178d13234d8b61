"""`plmlab serve` as a process: it reports its port, and SIGTERM stops it accepting, lets the
request in flight finish, then exits 0. Bounded: every wait has a timeout."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import httpx

from serve_helpers import tiny_checkpoint


def test_sigterm_drains_the_request_in_flight_then_exits(tmp_path):
    path = tiny_checkpoint(tmp_path, max_positions=512)
    proc = subprocess.Popen([sys.executable, "-m", "plmlab", "serve", "--model", str(path), "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        line = proc.stderr.readline()  # "plmlab: serving gpt-tiny (completions) on http://127.0.0.1:PORT"
        url = re.search(r"http://\S+", line).group(0)
        chunks, after_signal, sent = [], [], threading.Event()

        def client():
            body = {"prompt": "the cat", "max_tokens": 200, "temperature": 0, "stream": True}
            with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
                for data in r.iter_lines():
                    if data.startswith("data:"):
                        chunks.append(data)
                        if sent.is_set():
                            after_signal.append(data)

        reader = threading.Thread(target=client)
        reader.start()
        deadline = time.monotonic() + 30
        while len(chunks) < 3:
            assert time.monotonic() < deadline and reader.is_alive(), "no tokens streamed"
            time.sleep(0.005)
        proc.send_signal(signal.SIGTERM)
        sent.set()
        time.sleep(0.2)
        try:  # no new requests once the signal has arrived
            refused = httpx.get(url + "/health", timeout=2).status_code >= 500
        except httpx.TransportError:
            refused = True
        reader.join(60)
        assert proc.wait(60) == 0
        log = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert refused and not reader.is_alive()
    assert after_signal and chunks[-1] == "data: [DONE]"  # it was in flight, and it finished
    finish = json.loads(chunks[-2][len("data: "):])["choices"][0]["finish_reason"]
    assert finish in ("length", "stop")
    # the access log (on by default) has the drained stream's line, with its tokens, counted at its end
    assert re.search(r'plmlab: 127\.0\.0\.1:\d+ "POST /v1/completions" 200 \d+ ms prompt_tokens=\d+ '
                     r'completion_tokens=\d+\n', log), log


def test_no_access_log_turns_it_off(monkeypatch):
    from plmlab.cli import main

    seen = []
    monkeypatch.setattr("plmlab.serve.serve", lambda *args: seen.append(args[6]))
    assert main(["serve", "--model", "M"]) == 0 and main(["serve", "--model", "M", "--no-access-log"]) == 0
    assert [options.access_log for options in seen] == [True, False]


def test_serve_cli_mistakes_are_one_line(tmp_path, capsys):
    from plmlab.cli import main

    assert main(["serve", "--model", str(tmp_path / "nothing")]) == 2
    assert main(["serve", "--model", str(tmp_path), "--port", "70000"]) == 2
    assert main(["serve", "--model", str(tmp_path), "--max-queue", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("plmlab: error: ") for line in lines)
    assert "70000" in lines[1]
