"""Decoding speed: plmlab.generate versus transformers' generate on the same weights.

For a GPT-2-shaped and a LLaMA-shaped random model (loaded into plmlab from the transformers
checkpoint, so both decode the very same network and produce the same tokens), times
  greedy (batch 1), greedy (batch 4, left-padded), beam search (4 beams), top-p sampling,
and plmlab without its KV cache, in new tokens per second (median of interleaved repeats; the
machines are shared and noisy). Not a test.

    PYTHONPATH=src python bench/bench_generate.py [--threads 1] [--new-tokens 64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import plmlab


def hf_model(kind: str, vocab: int, d: int, layers: int, heads: int, ctx: int):
    import transformers as tf

    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = tf.GPT2Config(vocab_size=vocab, n_embd=d, n_layer=layers, n_head=heads, n_positions=ctx)
        return tf.GPT2LMHeadModel(cfg).eval()
    cfg = tf.LlamaConfig(vocab_size=vocab, hidden_size=d, intermediate_size=int(d * 8 / 3), num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads // 2, max_position_embeddings=ctx)
    return tf.LlamaForCausalLM(cfg).eval()


def cases(new: int) -> dict[str, tuple[int, dict]]:
    """name -> (batch, generate options)."""
    return {
        "greedy b1": (1, {}),
        "greedy b4 (padded)": (4, {}),
        "beam 4": (1, {"num_beams": 4}),
        "top-p b1": (1, {"do_sample": True, "top_p": 0.9, "seed": 0}),
    }


def prompt(batch: int, vocab: int, length: int = 24):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    for i in range(1, batch):  # different prompt lengths: left padding
        mask[i, : 3 * i] = 0
    return ids.masked_fill(mask == 0, 0), mask


def run_ours(model, ids, mask, new: int, kw: dict, use_cache: bool = True):
    return plmlab.generate(model, ids, attention_mask=mask, max_new_tokens=new, eos_token_id=None,
                           use_cache=use_cache, **kw)


def run_hf(model, ids, mask, new: int, kw: dict):
    kw = dict(kw)
    if "seed" in kw:
        torch.manual_seed(kw.pop("seed"))
    with torch.no_grad():
        out = model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, pad_token_id=0,
                             eos_token_id=None, **kw)
    return out[:, ids.shape[1]:]


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vocab, new = 8192, args.new_tokens
    print(f"threads {args.threads}, d_model {args.d_model}, {args.layers} layers, vocab {vocab}, "
          f"{new} new tokens; new tokens/s (higher is better)")
    print(f"{'model':<7}{'case':<20}{'plmlab':>10}{'transformers':>14}{'ratio':>8}{'no cache':>10}  same tokens")
    for kind in ("gpt2", "llama"):
        hf = hf_model(kind, vocab, args.d_model, args.layers, 8, 512)
        with tempfile.TemporaryDirectory() as d:
            hf.save_pretrained(d)
            ours = plmlab.load_pretrained(d)
        for name, (batch, kw) in cases(new).items():
            ids, mask = prompt(batch, vocab)
            same = "-" if kw.get("do_sample") else str(torch.equal(run_ours(ours, ids, mask, new, kw),
                                                                   run_hf(hf, ids, mask, new, kw)))
            t_ours = median_time(lambda: run_ours(ours, ids, mask, new, kw), args.repeats)
            t_hf = median_time(lambda: run_hf(hf, ids, mask, new, kw), args.repeats)
            t_nc = median_time(lambda: run_ours(ours, ids, mask, new, kw, use_cache=False), max(1, args.repeats // 2))
            n = batch * new
            print(f"{kind:<7}{name:<20}{n / t_ours:>10.0f}{n / t_hf:>14.0f}{t_hf / t_ours:>8.2f}{n / t_nc:>10.0f}  {same}")


if __name__ == "__main__":
    main()
