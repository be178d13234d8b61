"""What `--quantize int8` costs in quality: perplexity of a trained model on the built-in
validation split (plmlab.evaluate), fp32 versus int8, and the int8 model's decode speed.

    PYTHONPATH=src python bench/bench_quantize.py [--model runs/gpt-mini] [--steps 150] [--json out.json]

Without a trained checkpoint (`make pretrain` writes runs/gpt-mini) it first pretrains gpt-mini
for `--steps` steps into a temporary directory (a minute or two): random weights have no
perplexity worth comparing.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import torch

import plmlab
from plmlab.evaluate.perplexity import evaluate_perplexity
from plmlab.evaluate.text import document_texts
from plmlab.nn.quantize import quantize
from plmlab.pipelines import load_model_and_tokenizer


def trained_model(path: str | None, steps: int, tmp: str):
    if path and Path(path).exists():
        return load_model_and_tokenizer(path)
    from plmlab.train import PretrainOptions, pretrain

    os.environ.setdefault("PLMLAB_CACHE", os.path.join(tmp, "cache"))
    out = os.path.join(tmp, "run")
    pretrain(PretrainOptions(out=out, preset="gpt-mini", max_steps=steps, progress="none", save_every=0,
                             eval_every=0))
    return load_model_and_tokenizer(out)


def decode_tok_s(model, new: int = 32, repeats: int = 3) -> float:
    prompt = torch.randint(0, model.config.vocab_size, (1, 16), generator=torch.Generator().manual_seed(0))
    plmlab.generate(model, prompt, max_new_tokens=new, eos_token_id=None)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        plmlab.generate(model, prompt, max_new_tokens=new, eos_token_id=None)
        times.append(time.perf_counter() - start)
    return new / sorted(times)[len(times) // 2]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/gpt-mini", help="trained checkpoint (default: make pretrain's)")
    ap.add_argument("--steps", type=int, default=150, help="pretraining steps when there is no checkpoint")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = trained_model(args.model, args.steps, tmp)
        texts = document_texts(None)
        q = quantize(copy.deepcopy(model), "int8")
        ppl = {k: evaluate_perplexity(m, tok, texts).metrics["perplexity"] for k, m in (("fp32", model), ("int8", q))}
        speed = {k: decode_tok_s(m) for k, m in (("fp32", model), ("int8", q))}
    result = {"model": args.model if Path(args.model).exists() else f"gpt-mini, {args.steps} steps",
              "perplexity": ppl, "perplexity_change": ppl["int8"] / ppl["fp32"] - 1, "decode_tok_s": speed}
    print(f"validation perplexity fp32 {ppl['fp32']:.3f}, int8 {ppl['int8']:.3f} "
          f"({100 * result['perplexity_change']:+.2f} %); decode tok/s fp32 {speed['fp32']:.0f}, int8 {speed['int8']:.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
