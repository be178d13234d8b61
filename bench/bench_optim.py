"""Step time of each pretraining optimizer on this CPU: AdamW, Muon with fp32 Newton-Schulz, Muon
with bf16 Newton-Schulz (torch.optim.Muon's choice), arms interleaved in one process.

    PYTHONPATH=src python bench/bench_optim.py                            # gpt-mini and bert-mini
    PYTHONPATH=src python bench/bench_optim.py --presets llama-mini --rounds 7 --threads 2

A step is what `plmlab pretrain` does per step at its defaults (batch 16 x 128 tokens, one
thread unless --threads): forward, backward, clipping, the optimizer's step. Each round times
`--steps` steps of every arm in turn (rotating which arm goes first), so a load that comes and
goes on a shared machine hits every arm alike; the table gives the median step of all rounds and
the ratio of medians to AdamW's. `--optimizer-only` also times the optimizer's step alone.
Not a test: the numbers belong to the machine (its CPU capability is printed with them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import plmlab
from plmlab.train.muon import MuonAdamW, native_bf16
from plmlab.train.optim import make_optimizer

ARMS = ("adamw", "muon-fp32", "muon-bf16")


def make(arm: str, model):
    if arm == "adamw":
        return make_optimizer(model, 2e-3, 0.1)
    return MuonAdamW(model, 2e-3, 0.02, 0.1, ns_dtype=arm.removeprefix("muon-"))


def timed_steps(model, optimizer, batch: torch.Tensor, steps: int) -> tuple[list[float], list[float]]:
    """(whole-step seconds, optimizer-step seconds) of `steps` steps."""
    whole, opt = [], []
    params = [p for p in model.parameters() if p.requires_grad]
    for _ in range(steps):
        start = time.perf_counter()
        loss = model(input_ids=batch[:, :-1], labels=batch[:, 1:]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        mid = time.perf_counter()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        end = time.perf_counter()
        whole.append(end - start)
        opt.append(end - mid)
    return whole, opt


def bench(preset: str, batch_size: int, seq_len: int, steps: int, rounds: int) -> list[dict]:
    torch.manual_seed(0)
    template = plmlab.build_model(preset)
    vocab = template.config.vocab_size
    batch = torch.randint(0, vocab, (batch_size, seq_len + 1), generator=torch.Generator().manual_seed(0))
    runs = {}
    for arm in ARMS:  # one model and optimizer per arm, all from the same weights
        model = plmlab.build_model(preset)
        model.load_state_dict(template.state_dict())
        model.train()
        runs[arm] = (model, make(arm, model))
        timed_steps(*runs[arm], batch, 1)  # warm-up: allocations, optimizer state
    whole = {arm: [] for arm in ARMS}
    opt = {arm: [] for arm in ARMS}
    for r in range(rounds):
        order = ARMS[r % len(ARMS):] + ARMS[:r % len(ARMS)]
        for arm in order:
            w, o = timed_steps(*runs[arm], batch, steps)
            whole[arm] += w
            opt[arm] += o
    base = statistics.median(whole["adamw"])
    return [{"preset": preset, "arm": arm, "step_s": round(statistics.median(whole[arm]), 4),
             "optimizer_s": round(statistics.median(opt[arm]), 4),
             "ratio_to_adamw": round(statistics.median(whole[arm]) / base, 3),
             "tokens_per_s": round(batch_size * seq_len / statistics.median(whole[arm]), 1)} for arm in ARMS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["gpt-mini", "bert-mini"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2, help="steps per arm per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    capability = torch.backends.cpu.get_cpu_capability()
    rows = [row for p in args.presets for row in bench(p, args.batch_size, args.seq_len, args.steps, args.rounds)]
    if args.json:
        print(json.dumps({"cpu_capability": capability, "native_bf16": native_bf16(torch.device("cpu")),
                          "threads": args.threads, "rows": rows}))
        return
    print(f"CPU capability {capability}, native bf16 matmul: {native_bf16(torch.device('cpu'))}, "
          f"{args.threads} thread(s), batch {args.batch_size} x {args.seq_len}, "
          f"median of {args.rounds} interleaved rounds x {args.steps} steps")
    print("| preset | optimizer | step (s) | optimizer step (s) | step / AdamW's | tokens/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['preset']} | {r['arm']} | {r['step_s']:.3f} | {r['optimizer_s']:.3f} | "
              f"x{r['ratio_to_adamw']:.2f} | {r['tokens_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
