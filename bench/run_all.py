"""`make bench`: the whole speed bench in one run, written as Markdown and JSON to bench/results/.

Sections (each also runs alone from its own script):
  train     a training step, plmlab vs transformers, with the fraction of the matmul peak
            measured in the same run (bench_train.step_rows)
  decode    batch-1 greedy decoding vs transformers with the roofline fraction, fp32 and
            each --quantize scheme (bench_decode)
  batched   greedy decoding of 8 prompts of different lengths as one batch (bench_decode.batched)
  tokenize  tokenizer encoding and tokenizer + packing into token shards, in MB/s of text
  int8 ppl  perplexity and greedy agreement, fp32 vs each --quantize scheme (bench_quantize; needs
            runs/gpt-mini or trains one; SmolLM2 too where the real-weight tests converted it)
  speedrun  bench/speedrun.py --budget-s 30, when that file exists

Files: bench/results/latest.{md,json} and a copy named after the commit (results/<sha>.{md,json})
for comparison across commits. Numbers depend on the machine and its load: medians of
alternating runs, and the machine (lscpu's model line) is recorded with them.

    PYTHONPATH=src python bench/run_all.py [--quick] [--skip int8-ppl speedrun ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_decode  # noqa: E402
import bench_quantize  # noqa: E402
import bench_train  # noqa: E402

SECTIONS = ("train", "decode", "batched", "tokenize", "int8-ppl", "speedrun")


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in _lscpu().splitlines() if line.startswith("Model name")),
                 platform.processor() or "unknown")
    return {"cpu": model, "cores": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "python": platform.python_version()}


def _lscpu() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def tokenize_rows(n_docs: int | None = None) -> list[dict]:
    """MB/s of the built-in corpus (its first n_docs documents): encoding alone, then encoding +
    packing into token shards (a fresh cache), with gpt-mini's tokenizer (trained once, cached)."""
    from plmlab.data import builtin_documents
    from plmlab.data.shards import build_token_data
    from plmlab.tokenizers.builtin import builtin_tokenizer

    docs = builtin_documents()[:n_docs]
    texts = [" ".join(d) for d in docs]
    mb = sum(len(t.encode("utf-8")) for t in texts) / 2**20
    tok = builtin_tokenizer("gpt2", 8192)
    start = time.perf_counter()
    for t in texts:
        tok.encode(t, add_special_tokens=False)
    encode_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        build_token_data(docs, tok, cache_dir=d)
        pack_s = time.perf_counter() - start
    return [{"what": "encode (byte-level BPE, 8192 ids)", "mb": mb, "mb_per_s": mb / encode_s},
            {"what": "encode + pack into shards", "mb": mb, "mb_per_s": mb / pack_s}]


def speedrun(budget: int) -> dict:
    script = HERE / "speedrun.py"
    if not script.exists():
        return {"skipped": "bench/speedrun.py does not exist on this commit"}
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run([sys.executable, str(script), "--budget-s", str(budget)], capture_output=True,
                             text=True, cwd=HERE.parent, env={**os.environ, "PLMLAB_CACHE": os.path.join(d, "c")})
    return {"returncode": out.returncode, "output": out.stdout[-3000:] + out.stderr[-1000:]}


def run(args) -> dict:
    res: dict = {"commit": commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine()}
    if "train" not in args.skip:
        res["train"] = bench_train.step_rows(["gpt-mini", "llama-mini"], 8, 128, 4 if args.quick else 8)
    if "decode" not in args.skip:
        presets = ["gpt-mini", "llama-mini"] + ([] if args.quick else ["gpt2"])
        res["decode"] = bench_decode.main(["--presets", *presets, "--threads", str(args.threads), "--int8",
                                           "--new-tokens", "32", "--repeats", "3" if args.quick else "5"])
    if "batched" not in args.skip:
        res["batched"] = [bench_decode.batched(p) for p in ("gpt-mini", "llama-mini")]
    if "tokenize" not in args.skip:
        res["tokenize"] = tokenize_rows(500 if args.quick else None)
    if "int8-ppl" not in args.skip:
        res["int8_perplexity"] = bench_quantize.main(["--threads", str(args.threads)])
    if "speedrun" not in args.skip:
        res["speedrun"] = speedrun(30)
    return res


def markdown(r: dict) -> str:
    m = r["machine"]
    out = [f"# plmlab bench, commit {r['commit']}, {r['date']}",
           f"{m['cpu']}, {m['cores']} cores, torch {m['torch']}; medians of alternating runs on a shared machine", ""]
    if "train" in r:
        out += ["## Training step (batch 8 x 128)", "| preset | impl | ms/step | tokens/s | matmul peak GFLOP/s | of peak |",
                "|---|---|---|---|---|---|"]
        out += [f"| {x['preset']} | {x['impl']} | {x['ms_per_step']:.0f} | {x['tokens_per_s']:.0f} | "
                f"{x['matmul_peak_gflops']:.0f} | {x['peak_fraction']:.0%} |" for x in r["train"]]
    if "decode" in r:
        out += ["", "## Batch-1 greedy decode (32 new tokens)",
                "| preset | impl | tokens/s | vs transformers | roofline tokens/s | of roofline |", "|---|---|---|---|---|---|"]
        for p in r["decode"]:
            out += [f"| {p['preset']} | {k} | {v['tokens_per_s']:.1f} | {v['vs_transformers']:.2f}x | "
                    f"{v['roofline_tokens_per_s']:.1f} | {v['roofline_fraction']:.0%} |" for k, v in p["results"].items()]
    if "batched" in r:
        out += ["", "## Batched decode (8 prompts, lengths 3..52, 32 new tokens)",
                "| preset | plmlab tokens/s | transformers tokens/s | ratio | same tokens |", "|---|---|---|---|---|"]
        out += [f"| {b['preset']} | {b['tokens_per_s']['plmlab']:.0f} | {b['tokens_per_s']['transformers']:.0f} | "
                f"{b['vs_transformers']:.2f}x | {b['same_tokens']} |" for b in r["batched"]]
    if "tokenize" in r:
        out += ["", "## Tokenizer and packing (built-in corpus)", "| step | MB | MB/s |", "|---|---|---|"]
        out += [f"| {t['what']} | {t['mb']:.1f} | {t['mb_per_s']:.2f} |" for t in r["tokenize"]]
    if "int8_perplexity" in r:
        out += ["", "## int8 quality (bench_quantize)", bench_quantize.markdown(r["int8_perplexity"]).rstrip()]
    if "speedrun" in r:
        s = r["speedrun"]
        out += ["", "## Speedrun (30 s budget)", s.get("skipped") or f"```\n{s['output'].strip()}\n```"]
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads for decoding (default 1: steadier "
                                                           "on a shared machine)")
    ap.add_argument("--quick", action="store_true", help="fewer repeats, no GPT-2-small decode")
    ap.add_argument("--skip", nargs="*", default=[], choices=SECTIONS)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    res = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(res)
    for name in ("latest", res["commit"]):
        (out / f"{name}.json").write_text(json.dumps(res, indent=2))
        (out / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
