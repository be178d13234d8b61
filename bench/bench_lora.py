"""Memory of LoRA against full fine-tuning: peak RSS, optimizer state, gradients, step time.

    PYTHONPATH=src python bench/bench_lora.py                       # llama-mini, r 8, attention+mlp
    PYTHONPATH=src python bench/bench_lora.py --preset gpt-mini --r 16 --targets attention

Each mode trains in its own subprocess (peak RSS, `resource.getrusage`, is per process and only
grows): forward + backward + AdamW steps on random tokens, through plmlab's `make_optimizer`,
which holds state for `requires_grad` parameters only. tracemalloc does not see torch's
allocations, so RSS it is; "resident after build" is the process after the model exists, so the
difference is what training adds. Not a test: numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import torch

import plmlab
from plmlab.train import make_optimizer
from plmlab.train.lora import LoraOptions, apply_lora, trainable_summary


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def train(preset: str, lora: LoraOptions | None, batch: int, seq: int, steps: int) -> dict:
    torch.manual_seed(0)
    model = plmlab.build_model(preset).train()
    if lora is not None:
        apply_lora(model, lora)
    built = rss_mib()
    optimizer = make_optimizer(model, 1e-4, 0.0)
    x = torch.randint(0, model.config.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(0))
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        logits = model(input_ids=x).logits  # (B, T, V)
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        grad_bytes = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    state = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                if torch.is_tensor(t))
    return {"mode": "lora" if lora else "full", **trainable_summary(model), "optimizer_state_MiB": state / 2**20,
            "gradients_MiB": grad_bytes / 2**20, "resident_after_build_MiB": built, "peak_rss_MiB": rss_mib(),
            "step_s": sorted(times)[len(times) // 2]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="llama-mini")
    p.add_argument("--r", type=int, default=8)
    p.add_argument("--targets", default="attention,mlp")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--mode", choices=("full", "lora"), help=argparse.SUPPRESS)  # one subprocess's part
    a = p.parse_args()
    if a.mode:
        lora = LoraOptions(r=a.r, alpha=2 * a.r, targets=a.targets) if a.mode == "lora" else None
        print(json.dumps(train(a.preset, lora, a.batch_size, a.seq_len, a.steps)))
        return
    print(f"{a.preset}, batch {a.batch_size} x {a.seq_len}, LoRA r {a.r} on {a.targets}, {a.steps} steps")
    for mode in ("full", "lora"):
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--mode", mode], check=True,
                             capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        r = json.loads(out.stdout.splitlines()[-1])
        print(f"{r['mode']:>4}: trainable {r['trainable']:>9,} of {r['total']:,} params | optimizer state "
              f"{r['optimizer_state_MiB']:7.2f} MiB | grads {r['gradients_MiB']:7.2f} MiB | resident after build "
              f"{r['resident_after_build_MiB']:6.0f} MiB, peak {r['peak_rss_MiB']:6.0f} MiB | step {r['step_s']:.3f} s")


if __name__ == "__main__":
    main()
