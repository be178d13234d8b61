"""Where a decoded token's time goes: torch ops per token, and milliseconds per token.

Batch-1 greedy decoding of a preset with random weights (as bench/bench_decode.py). The profiler
records two `plmlab.generate` calls, of N and 2N new tokens after the same prompt; the difference
is N decode steps, so the prefill and the call's set-up cancel out. Prints the ops per token by
name (most frequent first) and the ms per token of an unprofiled run.

    PYTHONPATH=src python bench/profile_decode.py [--presets gpt-mini llama-mini] [--threads 1]
        [--new-tokens 32] [--top 25]
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

import plmlab
from plmlab.presets import get_preset


def _op_counts(model, prompt, new: int) -> collections.Counter:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        plmlab.generate(model, prompt, max_new_tokens=new, eos_token_id=None)
    # top-level ops only: an aten::linear that calls aten::matmul counts once
    return collections.Counter(e.name for e in prof.events() if e.cpu_parent is None)


def ops_per_token(model, prompt, new: int) -> dict[str, float]:
    """{op name: calls per decoded token}, from the difference of a 2N- and an N-token run."""
    _op_counts(model, prompt, 2)  # warm-up (allocator, the decode layout's cached copies)
    short, long = _op_counts(model, prompt, new), _op_counts(model, prompt, 2 * new)
    diff = {k: (long[k] - short.get(k, 0)) / new for k in long}
    return {k: v for k, v in sorted(diff.items(), key=lambda kv: -kv[1]) if v > 0}


def ms_per_token(model, prompt, new: int, repeats: int = 5) -> float:
    def run(n):
        start = time.perf_counter()
        plmlab.generate(model, prompt, max_new_tokens=n, eos_token_id=None)
        return time.perf_counter() - start

    run(new)
    diffs = [run(2 * new) - run(new) for _ in range(repeats)]
    return statistics.median(diffs) / new * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["gpt-mini", "llama-mini"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--top", type=int, default=25, help="print this many op names")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    for preset in args.presets:
        torch.manual_seed(0)
        model = plmlab.build_model(get_preset(preset)).eval()
        prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1))
        ops = ops_per_token(model, prompt, args.new_tokens)
        print(f"{preset}: {sum(ops.values()):.1f} top-level ops per token, "
              f"{ms_per_token(model, prompt, args.new_tokens):.2f} ms per token (threads {args.threads})")
        for name, n in list(ops.items())[: args.top]:
            print(f"  {n:7.1f}  {name}")


if __name__ == "__main__":
    main()
