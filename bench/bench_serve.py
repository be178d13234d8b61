"""Serving under load: `plmlab serve` (a real server process on 127.0.0.1) answering the same
greedy completions requests from 1, 4 and 16 concurrent clients, whose requests the worker batches
(one left-padded prefill, one decode step per token for all rows): generated tokens per second and
each request's p50 / p95 latency; then `/health`'s latency while clients flood the server with
~1 MB requests that it refuses (400: over the context), which must stay under ~1 s (their parsing
and tokenising run on threads, off the event loop). A random gpt-mini-sized model; the tokens
are checked equal across levels (batched greedy decoding gives the tokens of one-by-one decoding).
Bounded: a fixed number of requests per level and a fixed flood time. Not a test.

    PYTHONPATH=src python bench/bench_serve.py [--preset gpt-mini] [--requests 32] [--max-tokens 64]
        [--flood-clients 8] [--flood-seconds 10] [--json bench/results/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(url: str, prompts: list[str], max_tokens: int, clients: int) -> dict:
    """Every prompt answered, `clients` at a time: tokens/s, requests/s, p50/p95 latency (s), texts."""
    def ask(prompt: str):
        with httpx.Client(base_url=url, timeout=600) as c:
            start = time.perf_counter()
            r = c.post("/v1/completions", json={"prompt": prompt, "max_tokens": max_tokens, "temperature": 0})
            r.raise_for_status()
            body = r.json()
            return body["usage"]["completion_tokens"], body["choices"][0]["text"], time.perf_counter() - start

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(ask, prompts))
    seconds = time.perf_counter() - start
    latencies = [a[2] for a in answers]
    return {"clients": clients, "tokens_per_s": sum(a[0] for a in answers) / seconds,
            "requests_per_s": len(prompts) / seconds, "p50_s": percentile(latencies, 0.5),
            "p95_s": percentile(latencies, 0.95), "texts": [a[1] for a in answers]}


def flood(url: str, clients: int, seconds: float) -> dict:
    """/health's latency (every 0.1 s) while `clients` post ~1 MB requests the server refuses."""
    big = json.dumps({"prompt": "the cat sat on the mat " * 45_000, "max_tokens": 4}).encode()  # ~1 MB
    codes, health, stop = [], [], threading.Event()

    def attack():
        with httpx.Client(base_url=url, timeout=120) as c:
            while not stop.is_set():
                codes.append(c.post("/v1/completions", content=big,
                                    headers={"content-type": "application/json"}).status_code)

    threads = [threading.Thread(target=attack) for _ in range(clients)]
    for t in threads:
        t.start()
    with httpx.Client(base_url=url, timeout=120) as c:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            start = time.perf_counter()
            c.get("/health").raise_for_status()
            health.append(time.perf_counter() - start)
            time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    return {"clients": clients, "seconds": seconds, "body_bytes": len(big),
            "refused": {str(k): codes.count(k) for k in sorted(set(codes))},
            "health_p50_s": percentile(health, 0.5), "health_p95_s": percentile(health, 0.95),
            "health_max_s": max(health), "health_probes": len(health)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="gpt-mini")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,4,16", help="concurrent clients to measure")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads")
    parser.add_argument("--flood-clients", type=int, default=8, help="clients sending ~1 MB refused requests")
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    tok = builtin_tokenizer("gpt2")
    torch.manual_seed(0)
    model = plmlab.build_model(args.preset, vocab_size=tok.vocab_size)
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "threads": args.threads,
              "cores": os.cpu_count(), "load_before": os.getloadavg(), "preset": args.preset,
              "requests": args.requests, "max_tokens": args.max_tokens, "levels": []}
    print(f"{args.preset}, {args.requests} greedy requests x {args.max_tokens} tokens; CPU {result['cpu']}, "
          f"{os.cpu_count()} cores, load average {result['load_before'][0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        plmlab.save_pretrained(model, Path(tmp) / "model", tokenizer=tok)
        words = "the of a to and in is it for on with as by this that".split()
        prompts = [" ".join(words[(i * 7 + k) % len(words)] for k in range(4 + i % 13)) for i in range(args.requests)]
        proc, url = start_server(Path(tmp) / "model", args.threads)
        try:
            run(url, prompts[:2], 4, 1)  # warm-up
            reference = None
            for clients in [int(c) for c in args.levels.split(",")]:
                level = run(url, prompts, args.max_tokens, clients)
                texts = level.pop("texts")
                reference = reference or texts
                level["same_tokens"] = texts == reference
                result["levels"].append(level)
                print(f"  {clients:2d} clients  {level['tokens_per_s']:7.1f} tokens/s  {level['requests_per_s']:5.2f} "
                      f"requests/s  p50 {level['p50_s']:6.2f} s  p95 {level['p95_s']:6.2f} s  "
                      f"({'same tokens' if level['same_tokens'] else 'DIFFERENT tokens'})")
            idle = flood(url, 0, 1.0)
            f = result["flood"] = flood(url, args.flood_clients, args.flood_seconds)
            result["health_idle_p50_s"] = idle["health_p50_s"]
            print(f"  /health idle p50 {idle['health_p50_s'] * 1000:.0f} ms; under {f['clients']} clients sending "
                  f"{f['body_bytes'] / 1e6:.1f} MB requests for {f['seconds']:g} s (answers {f['refused']}): "
                  f"p50 {f['health_p50_s'] * 1000:.0f} ms, p95 {f['health_p95_s'] * 1000:.0f} ms, "
                  f"max {f['health_max_s'] * 1000:.0f} ms over {f['health_probes']} probes")
        finally:
            proc.terminate()
            proc.wait(60)
    result["load_after"] = os.getloadavg()
    print(f"  load average after: {result['load_after'][0]:.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
