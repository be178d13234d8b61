"""Training throughput: plmlab vs transformers on the same weights, and the `make pretrain` run.

    PYTHONPATH=src python bench/bench_train.py                      # step throughput, gpt-tiny/mini
    PYTHONPATH=src python bench/bench_train.py --presets gpt-mini --batch-size 16 --seq-len 128
    PYTHONPATH=src python bench/bench_train.py --full               # + the make-pretrain equivalent

Step throughput: forward + backward + AdamW on random tokens, after warm-up steps, median of
timed steps. The transformers model is the one plmlab's own checkpoint loads into
(`save_pretrained` then `AutoModelForCausalLM.from_pretrained`), so both train the same
architecture with the same initial weights. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import plmlab
from plmlab.presets import get_preset
from plmlab.train import make_optimizer


def step_times(model, vocab: int, batch: int, seq: int, steps: int, warmup: int = 2) -> list[float]:
    optimizer = make_optimizer(model, 1e-4, 0.1)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, vocab, (batch, seq + 1), generator=g)
    inputs, labels = x[:, :-1], x[:, 1:]
    model.train()
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        out = model(input_ids=inputs, labels=labels)
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return times


class ShiftFree(torch.nn.Module):
    """transformers shifts labels inside the loss; plmlab's objectives pass them pre-shifted.
    Feeding transformers (inputs, inputs+next) keeps the work identical."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, labels):
        return self.model(input_ids=input_ids, labels=torch.cat([input_ids[:, :1], labels], dim=1)[:, :-1])


def matmul_peak_flops(n: int = 1024, repeats: int = 5) -> float:
    """FLOP/s of a large fp32 matmul measured now: the machine's practical peak (same run, same
    threads, same load as the steps it is compared with)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times)


def step_rows(presets, batch: int, seq: int, steps: int, hf: bool = True) -> list[dict]:
    """Per preset and implementation: median ms/step, tokens/s and the fraction of the same-run
    matmul peak the step's model FLOPs (6N + attention per token, PaLM appendix B) reach."""
    from plmlab.train.flops import model_flops_per_token

    rows = []
    for name in presets:
        config = get_preset(name)
        torch.manual_seed(0)
        model = plmlab.build_model(config)
        impls = [("plmlab", model)]
        if hf:
            from transformers import AutoModelForCausalLM

            with tempfile.TemporaryDirectory() as d:
                plmlab.save_pretrained(model, d)
                impls.append(("transformers", ShiftFree(AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa"))))
        fpt = model_flops_per_token(config, model.num_parameters(), seq)
        times = {k: [] for k, _ in impls}
        for _ in range(2):  # alternate the implementations: a load change hits both
            for k, m in impls:
                times[k] += step_times(m, config.vocab_size, batch, seq, max(1, steps // 2))
        peak = matmul_peak_flops()
        for k, _ in impls:
            s = statistics.median(times[k])
            rows.append({"preset": name, "impl": k, "params": model.num_parameters(), "ms_per_step": 1e3 * s,
                         "tokens_per_s": batch * seq / s, "matmul_peak_gflops": peak / 1e9,
                         "peak_fraction": fpt * batch * seq / s / peak})
    return rows


def bench_steps(args) -> None:
    print(f"threads {torch.get_num_threads()}, batch {args.batch_size} x seq {args.seq_len}, {args.steps} timed steps")
    print(f"{'preset':<10} {'params':>10} {'impl':<13} {'ms/step':>9} {'tokens/s':>10}")
    for name in args.presets:
        config = get_preset(name)
        torch.manual_seed(0)
        model = plmlab.build_model(config)
        rows = [("plmlab", step_times(model, config.vocab_size, args.batch_size, args.seq_len, args.steps))]
        if args.hf:
            try:
                from transformers import AutoModelForCausalLM
            except ImportError:
                AutoModelForCausalLM = None
            if AutoModelForCausalLM is not None:
                with tempfile.TemporaryDirectory() as d:
                    plmlab.save_pretrained(model, d)
                    hf = AutoModelForCausalLM.from_pretrained(d, attn_implementation="sdpa")
                rows.append(("transformers", step_times(ShiftFree(hf), config.vocab_size, args.batch_size,
                                                        args.seq_len, args.steps)))
        for impl, times in rows:
            median = statistics.median(times)
            print(f"{name:<10} {model.num_parameters():>10,} {impl:<13} {1000 * median:>9.1f} "
                  f"{args.batch_size * args.seq_len / median:>10,.0f}")


def bench_full(args) -> None:
    """`plmlab pretrain --preset gpt-mini` with every default, timed end to end."""
    from plmlab.cli.pretrain import print_summary
    from plmlab.train import PretrainOptions, pretrain

    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("PLMLAB_CACHE", os.path.join(d, "cache"))
        start = time.perf_counter()
        result = pretrain(PretrainOptions(out=os.path.join(d, "run"), preset=args.full_preset, progress="plain"))
        print(f"end to end: {time.perf_counter() - start:.1f} s (fresh cache: tokenizer and shards built)")
        print_summary(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["gpt-tiny", "gpt-mini"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-hf", dest="hf", action="store_false", help="skip the transformers comparison")
    parser.add_argument("--full", action="store_true", help="also run the make-pretrain equivalent")
    parser.add_argument("--full-preset", default="gpt-mini")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_steps(args)
    if args.full:
        bench_full(args)


if __name__ == "__main__":
    main()
