"""Scoring speed: the built-in suite on a gpt-mini-sized random model, plmlab's batched scorer
(one prefill per context, its KV cache copied to each choice, many pairs per forward pass)
versus the plain loop (one forward pass per (context, choice) pair, nothing shared), in items
per second (median of interleaved repeats; the machines are shared and noisy). Both give the
same log-likelihoods (checked here too). Not a test.

    PYTHONPATH=src python bench/bench_eval.py [--threads 1] [--items 100] [--repeats 3] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import plmlab
from plmlab.evaluate.builtin_tasks import TASKS, build_task
from plmlab.evaluate.choice import TARGET_DELIMITER
from plmlab.evaluate.scoring import encode_pairs, loglikelihoods
from plmlab.tokenizers import builtin_tokenizer


@torch.no_grad()
def plain_loop(model, tokenizer, pairs) -> list[float]:
    """One pair at a time: the whole context + continuation[:-1] through the model."""
    out = []
    limit = model.config.max_positions
    for ctx, cont in encode_pairs(model, tokenizer, pairs):
        ids = (ctx + cont)[-(limit + 1):]
        n_ctx = len(ids) - len(cont)
        logp = model(torch.tensor([ids[:-1]])).logits[0, n_ctx - 1:].float().log_softmax(-1)  # (n, V)
        out.append(float(logp.gather(-1, torch.tensor(cont)[:, None]).sum()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--items", type=int, default=100, help="items per task")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = plmlab.build_model("gpt-mini").eval()
    tokenizer = builtin_tokenizer("gpt2", model.config.vocab_size)
    items = [it for name in TASKS for it in build_task(name, args.items, seed=0)]
    pairs = [(it["context"], TARGET_DELIMITER + c) for it in items for c in it["choices"]]
    runs = {"plmlab (batched, shared KV cache)": lambda: [ll for ll, _ in loglikelihoods(
                model, tokenizer, pairs, args.batch_size)],
            "plain loop (one pair per forward)": lambda: plain_loop(model, tokenizer, pairs)}
    times: dict[str, list[float]] = {name: [] for name in runs}
    results = {}
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    a, b = results.values()
    print(f"gpt-mini ({model.num_parameters() / 1e6:.1f} M params), built-in suite: {len(items)} items "
          f"({len(pairs)} pairs), {torch.get_num_threads()} thread(s), batch size {args.batch_size}; "
          f"max |delta log-likelihood| = {np.max(np.abs(np.subtract(a, b))):.2e}")
    base = statistics.median(times["plain loop (one pair per forward)"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"  {name:<36} {t:7.2f} s  {len(items) / t:8.1f} items/s  x{base / t:.1f}")


if __name__ == "__main__":
    main()
