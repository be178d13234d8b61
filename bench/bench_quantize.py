"""What `--quantize` costs in quality: fp32 against each scheme (plmlab.nn.quantize.SCHEMES), as
perplexity and as greedy agreement, on the built-in gpt-mini pretrained briefly and on a real
pretrained LLM (SmolLM2-135M-Instruct, where tests/real_weights.py's packages are installed).

    PYTHONPATH=src python bench/bench_quantize.py [--model runs/gpt-mini] [--steps 150] [--real DIR]
        [--real-tokens 4096] [--new-tokens 32] [--json out.json] [--markdown out.md]

perplexity  plmlab.evaluate's perplexity on the built-in validation split (the real LLM: its first
            --real-tokens tokens, in windows of 512)
agreement   the fraction of the first --new-tokens greedy tokens equal to fp32's, position by
            position, over PROMPTS (a token after a divergence usually differs too: it is strict)

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
from plmlab.nn.quantize import SCHEMES, quantize
from plmlab.pipelines import load_model_and_tokenizer

HERE = Path(__file__).resolve().parent
# where tests/real_weights.py converts SmolLM2-135M-Instruct (run its tests once to make it)
REAL = HERE.parent / ".pytest_cache" / "d" / "real-weights" / "smollm2-135m-instruct-q4_1"
PROMPTS = ["The capital of France is", "Once upon a time, in a small village,", "Water boils at",
           "The best way to learn a language is", "def fibonacci(n):"]


def trained_model(path: str | None, steps: int, tmp: str):
    if path and Path(path).exists():
        return load_model_and_tokenizer(path)
    from plmlab.train import PretrainOptions, pretrain

    os.environ.setdefault("PLMLAB_CACHE", os.path.join(tmp, "cache"))
    out = os.path.join(tmp, "run")
    pretrain(PretrainOptions(out=out, preset="gpt-mini", max_steps=steps, progress="none", save_every=0,
                             eval_every=0))
    return load_model_and_tokenizer(out)


def first_tokens(tokenizer, texts: list[str], n: int) -> str:
    """The leading documents' text up to about `n` tokens."""
    ids: list[int] = []
    for t in texts:
        ids += tokenizer.encode(t + "\n\n", add_special_tokens=False)
        if len(ids) >= n:
            break
    return tokenizer.decode(ids[:n])


def greedy(model, tokenizer, new: int) -> torch.Tensor:  # (prompts, new)
    return torch.stack([plmlab.generate(model, [tokenizer.encode(p)], max_new_tokens=new, eos_token_id=None)[0]
                        for p in PROMPTS])


def weight_mb(model) -> float:
    """MB the weights take: every parameter and buffer (a tied matrix once), and the int8 layers'."""
    total = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
    total += sum(m.weight_bytes() for m in model.modules() if callable(getattr(m, "weight_bytes", None)))
    return total / 2**20


def compare(name: str, model, tokenizer, texts: list[str], new: int, max_length: int | None) -> dict:
    """fp32 and every scheme on one model: perplexity, its change, greedy agreement, seconds."""
    rows, reference = {}, None
    for scheme in (None, *SCHEMES):
        m = model if scheme is None else quantize(copy.deepcopy(model), scheme)
        start = time.perf_counter()
        ppl = evaluate_perplexity(m, tokenizer, texts, max_length=max_length).metrics["perplexity"]
        tokens = greedy(m, tokenizer, new)
        reference = tokens if scheme is None else reference
        row = rows[scheme or "fp32"] = {"perplexity": ppl, "agreement": (tokens == reference).float().mean().item(),
                                        "weight_mb": weight_mb(m), "seconds": time.perf_counter() - start}
        print(f"{name}: {scheme or 'fp32'} perplexity {ppl:.3f}, greedy agreement {row['agreement']:.3f}", flush=True)
    for r in rows.values():
        r["change"] = r["perplexity"] / rows["fp32"]["perplexity"] - 1
    return {"model": name, "schemes": rows}


def markdown(result: dict) -> str:
    out = [f"CPU {result['cpu']}, torch {result['torch']}, {result['threads']} thread(s); greedy agreement over "
           f"{len(PROMPTS)} prompts x {result['new_tokens']} tokens", "",
           "| model | scheme | perplexity | vs fp32 | greedy agreement | weights MB |", "|---|---|---|---|---|---|"]
    for m in result["models"]:
        out += [f"| {m['model']} | {k} | {v['perplexity']:.3f} | {100 * v['change']:+.2f} % | {v['agreement']:.1%} | "
                f"{v['weight_mb']:.0f} |" for k, v in m["schemes"].items()]
    return "\n".join(out) + "\n"


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="runs/gpt-mini", help="trained checkpoint (default: make pretrain's)")
    ap.add_argument("--steps", type=int, default=150, help="pretraining steps when there is no checkpoint")
    ap.add_argument("--real", default=str(REAL), help="a real pretrained LLM's directory (skipped if absent)")
    ap.add_argument("--real-tokens", type=int, default=4096, help="tokens of the validation split it scores")
    ap.add_argument("--new-tokens", type=int, default=32, help="greedy tokens compared per prompt")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--markdown", help="write the table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    texts = document_texts(None)
    models = []
    with tempfile.TemporaryDirectory() as tmp:
        model, tok = trained_model(args.model, args.steps, tmp)
        name = args.model if Path(args.model).exists() else f"gpt-mini, {args.steps} steps"
        models.append(compare(name, model, tok, texts, args.new_tokens, None))
    if Path(args.real).is_dir():
        model, tok = load_model_and_tokenizer(args.real)
        text = first_tokens(tok, texts, args.real_tokens)
        models.append(compare(Path(args.real).name, model, tok, [text], args.new_tokens, 512))
    else:
        print(f"no real LLM at {args.real}: run tests/parity/test_quantize_real.py once (it converts SmolLM2), or give --real")
    result = {"cpu": torch.backends.cpu.get_cpu_capability(), "torch": torch.__version__, "threads": args.threads,
              "new_tokens": args.new_tokens, "models": models}
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result))
    return result


if __name__ == "__main__":
    main()
