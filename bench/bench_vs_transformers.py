"""plmlab versus transformers, side by side in one run: same config, same weights, same threads.

Measures (median of several interleaved repeats; these machines are shared and noisy):
  - a training step (forward + backward + AdamW step) at batch B x T,
  - greedy decoding tokens/s with a KV cache (batch 1, a short prompt),
for a GPT-2-shaped and a LLaMA-shaped model. Prints a table and writes JSON with --json.

    python bench/bench_vs_transformers.py [--threads 2] [--repeats 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

import plmlab


def hf_models(vocab: int, d: int, layers: int, heads: int, ctx: int):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    yield "gpt2", GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=d, n_layer=layers, n_head=heads,
                                             n_positions=ctx, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0))
    yield "llama", LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=int(8 * d / 3),
                                                num_hidden_layers=layers, num_attention_heads=heads,
                                                num_key_value_heads=heads // 2, max_position_embeddings=ctx))


def train_step_fn(model, ids, ours: bool):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        # HF shifts labels inside the model; plmlab's objectives pass aligned labels.
        loss = model(ids[:, :-1], labels=ids[:, 1:]).loss if ours else model(ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def decode_fn(model, prompt, new_tokens: int, ours: bool):
    model.eval()

    def run():
        with torch.no_grad():
            if ours:
                plmlab.generate(model, prompt, max_new_tokens=new_tokens, eos_token_id=None)
            else:
                model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                               pad_token_id=0, eos_token_id=None)

    return run


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def compare(fns: dict, repeats: int) -> dict[str, float]:
    """Interleave the contenders (A B A B ...) after one warm-up each; return medians."""
    for fn in fns.values():
        fn()
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            times[k].append(timed(fn))
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    results = []
    for name, hf in hf_models(vocab=8192, d=256, layers=4, heads=8, ctx=512):
        with tempfile.TemporaryDirectory() as tmp:
            hf.save_pretrained(tmp)
            ours = plmlab.load_pretrained(tmp)
        hf = hf.float()
        ids = torch.randint(0, 8192, (args.batch, args.seq + 1))
        step = compare({"plmlab": train_step_fn(ours, ids, True), "transformers": train_step_fn(hf, ids, False)},
                       args.repeats)
        prompt = torch.randint(0, 8192, (1, 16))
        dec = compare({"plmlab": decode_fn(ours, prompt, args.new_tokens, True),
                       "transformers": decode_fn(hf, prompt, args.new_tokens, False)}, args.repeats)
        row = {
            "model": name, "params": ours.num_parameters(),
            "train_step_s": step, "train_speedup": step["transformers"] / step["plmlab"],
            "decode_tok_s": {k: args.new_tokens / v for k, v in dec.items()},
            "decode_speedup": dec["transformers"] / dec["plmlab"],
        }
        results.append(row)
        print(f"{name:>6} ({row['params'] / 1e6:.1f}M params, threads={args.threads}, batch {args.batch}x{args.seq}): "
              f"train step plmlab {step['plmlab'] * 1e3:.0f} ms vs transformers {step['transformers'] * 1e3:.0f} ms "
              f"(x{row['train_speedup']:.2f}); greedy decode plmlab {row['decode_tok_s']['plmlab']:.0f} tok/s vs "
              f"transformers {row['decode_tok_s']['transformers']:.0f} tok/s (x{row['decode_speedup']:.2f})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
