"""Batch-1 greedy decoding: plmlab.generate versus transformers' generate, and the roofline.

For each preset (random weights: plmlab builds the model, saves it, transformers loads that
checkpoint, so both decode the very same network; a checkpoint directory in place of a preset
name decodes that model, e.g. a real one), times greedy decoding of `--new-tokens`
tokens after a 16-token prompt, plmlab and transformers alternating (A B A B ...), and reports
medians; the machines are shared and noisy. Variants: plmlab as is, each `--quantize` scheme
(int8 weight-only, int8-dynamic; --int8-kernels adds weight-only int8 run by each candidate
kernel), `--compile` (with --compile only: minutes of compilation on a CPU).

The roofline: decoding one token reads every weight once, so tokens/s cannot beat
  streaming-read bandwidth (measured in the same run: a sum over a 256 MB buffer) / weight bytes per token.
The fraction reported is achieved tokens/s over that bound.

    PYTHONPATH=src python bench/bench_decode.py [--presets gpt-mini llama-mini gpt2] [--threads 2]
        [--new-tokens 64] [--repeats 5] [--int8] [--int8-kernels] [--compile] [--cpu-time] [--shapes] [--json out.json]

--cpu-time times in process CPU seconds (a machine shared with other jobs); --shapes adds the
matrix-vector GB/s of each weight shape in both layouts and the kernel ceiling they imply.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import os
import statistics
import tempfile
import time

import torch

import plmlab
from bench_vs_transformers import compare  # warm-up, then A B A B ...: medians
from plmlab.presets import get_preset


def stream_bandwidth(mb: int = 256, repeats: int = 5, clock=time.perf_counter) -> float:
    """Bytes/s of a plain streaming read (torch.sum over a buffer far larger than the caches)."""
    buf = torch.ones(mb * 2**20 // 4)
    buf.sum()
    times = []
    for _ in range(repeats):
        start = clock()
        buf.sum()
        times.append(clock() - start)
    return buf.numel() * 4 / statistics.median(times)


def cpu_compare(fns: dict, repeats: int) -> dict[str, float]:
    """As `compare` (warm-up, then A B A B ...: medians), timed in this process's CPU seconds: on
    a machine shared with other jobs, wall time also counts the time the scheduler gave them
    (memory-bandwidth and cache contention still count: the figures stay noisier than quiet ones)."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            start = time.process_time()
            fn()
            times[k].append(time.process_time() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def matvec_ceilings(model, repeats: int = 7) -> dict:
    """GB/s of one-token products per distinct linear weight shape, in both layouts: `F.linear`
    on nn.Linear's (out, in) weight and `torch.mm` on the (in, out) copy that `generate` uses.
    Random weights of each shape, enough copies (>= 64 MB) that the caches do not hold them.
    The sum over the model's layers of the faster layout's time is the kernel ceiling: what
    decoding would reach with no other work than the matrix products."""
    shapes = collections.Counter(tuple(m.weight.shape) for m in model.modules()
                                 if isinstance(m, torch.nn.Linear) and m.weight.dtype == torch.float32)
    rows, per_token = {}, 0.0
    for (out_f, in_f), count in shapes.items():
        nbytes = out_f * in_f * 4
        w = [torch.randn(out_f, in_f) for _ in range(max(1, 64 * 2**20 // nbytes))]
        wt = [m.t().contiguous() for m in w]  # (in, out)
        x = torch.randn(1, in_f)
        fns = {"linear": lambda: [torch.nn.functional.linear(x, m) for m in w],
               "mm_t": lambda: [torch.mm(x, m) for m in wt]}
        s = {k: v / len(w) for k, v in cpu_compare(fns, repeats).items()}  # seconds per product
        rows[f"{in_f}x{out_f}"] = {k: nbytes / v / 1e9 for k, v in s.items()} | {"count": count}
        per_token += count * min(s.values())
    return {"gb_s": rows, "kernel_ceiling_tokens_per_s": 1 / per_token}


def weight_bytes_per_token(model) -> int:
    """Bytes of weights one decoding step reads: every unique tensor but the embedding tables,
    of which a step reads one row (a tied LM head is read in full, as the head)."""
    seen, total = set(), 0
    head = getattr(getattr(model, "head", None), "proj", None)
    head_w = getattr(head, "weight", None)  # an int8 head has none: it counts as a module below
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if id(t) in seen or (name.startswith("embed.") and t is not head_w):
            continue
        seen.add(id(t))
        total += t.numel() * t.element_size()
    for m in model.modules():  # int8 layers keep their weights in packed parameters
        nbytes = getattr(m, "weight_bytes", None)
        if callable(nbytes):
            total += nbytes()
    return total


def contenders(preset: str, new: int, int8: bool, compile: bool, kernels: bool = False):
    """name -> (model, decode function); the transformers model loads plmlab's checkpoint."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    # a preset (random weights), or a checkpoint directory (a real model: the same shapes and speed)
    ours = (plmlab.load_pretrained(preset) if os.path.isdir(preset) else plmlab.build_model(get_preset(preset))).eval()
    with tempfile.TemporaryDirectory() as d:
        plmlab.save_pretrained(ours, d)
        hf = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa").eval()
    prompt = torch.randint(0, ours.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(1))

    def ours_fn(model, **kw):
        return lambda: plmlab.generate(model, prompt, max_new_tokens=new, eos_token_id=None, **kw)

    def hf_fn():
        with torch.no_grad():
            return hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0,
                               eos_token_id=None)[:, prompt.shape[1]:]

    fns = {"plmlab": (ours, ours_fn(ours)), "transformers": (hf, hf_fn)}
    if compile:
        fns["plmlab compile"] = (ours, ours_fn(ours, compile=True))
    if int8:
        from plmlab.nn.quantize import KERNELS, SCHEMES, Int8Linear, quantize

        for scheme in SCHEMES:
            q = quantize(copy.deepcopy(ours), scheme)  # the same weights, int8
            fns[f"plmlab {scheme}"] = (q, ours_fn(q))
        for kernel in KERNELS if kernels else ():  # weight-only int8 run by each candidate kernel
            if kernel != Int8Linear.kernel:
                q = quantize(copy.deepcopy(ours), "int8")
                for m in q.modules():
                    if isinstance(m, Int8Linear):
                        m.kernel = kernel
                fns[f"plmlab int8 {kernel}"] = (q, ours_fn(q))
    return fns


def run_preset(preset: str, args, bandwidth: float) -> dict:
    fns = contenders(preset, args.new_tokens, args.int8 or args.int8_kernels, args.compile, args.int8_kernels)
    models = {k: m for k, (m, _) in fns.items()}
    out = {k: fn() for k, (_, fn) in fns.items()}  # first call: warm-up and the token check
    same = {k: bool(torch.equal(out[k], out["transformers"])) for k in out
            if k != "transformers" and not k.startswith("plmlab int8")}  # int8 rounds: not the same network
    seconds = (cpu_compare if args.cpu_time else compare)({k: fn for k, (_, fn) in fns.items()}, args.repeats)
    rows = {}
    for k, s in seconds.items():
        tok_s = args.new_tokens / s
        roof = bandwidth / weight_bytes_per_token(models[k]) if k != "transformers" else \
            bandwidth / weight_bytes_per_token(models["plmlab"])
        rows[k] = {"tokens_per_s": tok_s, "vs_transformers": seconds["transformers"] / s,
                   "roofline_tokens_per_s": roof, "roofline_fraction": tok_s / roof}
    ours = models["plmlab"]
    out = {"preset": preset, "params": ours.num_parameters(), "weight_mb": weight_bytes_per_token(ours) / 2**20,
           "same_tokens_as_transformers": same, "results": rows}
    if args.shapes:
        out["matvec"] = matvec_ceilings(ours)
    return out


def batched(preset: str, new: int = 32, repeats: int = 3, lengths=(3, 7, 12, 18, 25, 33, 42, 52)) -> dict:
    """Greedy decoding of 8 prompts of different lengths as one left-padded batch."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ours = plmlab.build_model(get_preset(preset)).eval()
    with tempfile.TemporaryDirectory() as d:
        plmlab.save_pretrained(ours, d)
        hf = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa").eval()
    g = torch.Generator().manual_seed(2)
    rows = [torch.randint(1, ours.config.vocab_size, (n,), generator=g).tolist() for n in lengths]
    ids, mask = plmlab.generation.pad_batch(rows, pad=0, left=True)

    def hf_fn():
        with torch.no_grad():
            return hf.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                               pad_token_id=0, eos_token_id=None)[:, ids.shape[1]:]

    fns = {"plmlab": lambda: plmlab.generate(ours, rows, max_new_tokens=new, eos_token_id=None),
           "transformers": hf_fn}
    same = bool(torch.equal(fns["plmlab"](), hf_fn()))
    s = compare(fns, repeats)
    return {"preset": preset, "batch": len(rows), "prompt_lengths": list(lengths), "same_tokens": same,
            "tokens_per_s": {k: len(rows) * new / v for k, v in s.items()},
            "vs_transformers": s["transformers"] / s["plmlab"]}


def print_row(r: dict) -> None:
    for k, v in r["results"].items():
        print(f"{r['preset']:<11}{k:<26}{v['tokens_per_s']:>9.1f}{v['vs_transformers']:>9.2f}"
              f"{v['roofline_tokens_per_s']:>10.1f}{v['roofline_fraction']:>8.0%}")
    if "matvec" in r:
        shapes = "  ".join(f"{k} x{v['count']}: linear {v['linear']:.1f} mm_t {v['mm_t']:.1f}"
                           for k, v in r["matvec"]["gb_s"].items())
        print(f"{'':<11}matvec GB/s (in x out): {shapes}; "
              f"kernel ceiling {r['matvec']['kernel_ceiling_tokens_per_s']:.1f} tok/s")


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["gpt-mini", "llama-mini", "gpt2"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--int8", action="store_true", help="also time each --quantize scheme")
    ap.add_argument("--int8-kernels", action="store_true",
                    help="--int8, and weight-only int8 run by each kernel of plmlab.nn.quantize.KERNELS")
    ap.add_argument("--compile", action="store_true", help="also time --compile (slow to compile)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="time in process CPU seconds, not wall seconds (for a machine shared with other jobs)")
    ap.add_argument("--shapes", action="store_true",
                    help="also measure the matrix-vector GB/s of each weight shape in both layouts")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bw = stream_bandwidth(clock=time.process_time if args.cpu_time else time.perf_counter)
    clock = "process CPU time" if args.cpu_time else "wall time"
    print(f"threads {args.threads}, {args.new_tokens} new tokens, batch 1 greedy, {clock}; "
          f"streaming read {bw / 1e9:.1f} GB/s")
    print(f"{'preset':<11}{'impl':<26}{'tok/s':>9}{'vs HF':>9}{'roof t/s':>10}{'roof %':>8}")
    results = []
    for preset in args.presets:
        r = run_preset(preset, args, bw)
        r["stream_gb_s"] = bw / 1e9
        print_row(r)
        results.append(r)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == "__main__":
    main()
