"""Serving throughput: generated tokens per second of `plmlab serve` (a real server process on
127.0.0.1) answering the same greedy completions requests one by one, and from 1, 4 and 16
concurrent clients, whose requests the worker batches (one left-padded prefill, one decode step
per token for all rows). A random gpt-mini-sized model; the tokens are checked equal across
modes (batched greedy decoding gives the tokens of one-by-one decoding). Not a test.

    PYTHONPATH=src python bench/bench_serve.py [--preset gpt-mini] [--requests 32] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import torch

import plmlab
from plmlab.tokenizers import builtin_tokenizer


def start_server(model_dir: Path, threads: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.Popen([sys.executable, "-m", "plmlab", "serve", "--model", str(model_dir), "--port", "0",
                             "--max-batch", "16", "--max-queue", "256"], stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stderr.readline()
    match = re.search(r"http://\S+", line)
    if not match:
        proc.kill()
        raise SystemExit(f"the server did not start: {line}{proc.stderr.read()}")
    return proc, match.group(0)


def run(url: str, prompts: list[str], max_tokens: int, clients: int) -> tuple[float, list[str]]:
    """(tokens per second, texts) of every prompt answered, `clients` at a time."""
    def ask(prompt: str):
        with httpx.Client(base_url=url, timeout=600) as c:
            r = c.post("/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
            r.raise_for_status()
            body = r.json()
            return body["usage"]["completion_tokens"], body["choices"][0]["text"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(ask, prompts))
    seconds = time.perf_counter() - start
    return sum(n for n, _ in answers) / seconds, [t for _, t in answers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt-mini")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients to measure")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    args = parser.parse_args()
    tok = builtin_tokenizer("gpt2")
    torch.manual_seed(0)
    model = plmlab.build_model(args.preset, vocab_size=tok.vocab_size)
    with tempfile.TemporaryDirectory() as tmp:
        plmlab.save_pretrained(model, Path(tmp) / "model", tokenizer=tok)
        words = "the of a to and in is it for on with as by this that".split()
        prompts = [" ".join(words[(i * 7 + k) % len(words)] for k in range(4 + i % 13)) for i in range(args.requests)]
        proc, url = start_server(Path(tmp) / "model", args.threads)
        try:
            run(url, prompts[:2], 4, 1)  # warm-up
            base, reference = run(url, prompts, args.max_tokens, 1)
            print(f"{args.preset}, {args.requests} requests x {args.max_tokens} tokens, greedy")
            print(f"  one by one       {base:8.1f} tokens/s")
            for clients in [int(c) for c in args.levels.split(",")]:
                speed, texts = run(url, prompts, args.max_tokens, clients)
                same = "same tokens" if texts == reference else "DIFFERENT tokens"
                print(f"  {clients:2d} concurrent    {speed:8.1f} tokens/s  x{speed / base:4.1f}  ({same})")
        finally:
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
