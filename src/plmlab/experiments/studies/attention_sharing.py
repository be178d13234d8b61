"""`attention-sharing`: multi-head (MHA) vs grouped-query (GQA) vs multi-query (MQA) attention.

MQA (Shazeer 2019) gives every query head the same single key/value head; GQA (Ainslie et al.
2023) shares one key/value head per group of query heads. The KV cache -- what incremental
decoding reads from memory at every token besides the weights -- shrinks by n_heads /
n_kv_heads, and the papers report quality close to MHA (GQA closer than MQA) with faster
decoding. Every arm is the same llama preset with only `n_kv_heads` changed, so GQA and MQA
also have fewer parameters (smaller K and V projections); trained from scratch here, where the
GQA paper up-trained MHA checkpoints.

Measured per arm: KV-cache bytes per token of context (fp32, all layers; exact, from the
config), the validation loss after training, and batch-1 greedy decode tokens/s (median of a
few timed generations after a warm-up; the machine is shared, so the interval matters).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ...generation import generate
from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

SCALE = {  # preset, kv-head counts (MHA first), steps, batch, seq_len, decode tokens, timed repeats
    "smoke": ("llama-tiny", (4, 2, 1), 6, 4, 32, 8, 2),
    "default": ("llama-mini", (8, 2, 1), 120, 16, 64, 64, 5),
    "large": ("llama-mini", (8, 4, 2, 1), 2000, 64, 256, 256, 9),
}
BYTES_PER_VALUE = 4  # fp32 on CPU


def arms(scale: str) -> list[Arm]:
    heads = SCALE[scale][1]
    name = {heads[0]: "mha", 1: "mqa"}
    return [Arm(name.get(k, f"gqa-{k}"), {"n_kv_heads": k}) for k in heads]


def kv_bytes_per_token(config) -> int:
    """Keys + values of every layer for one position: 2 * layers * kv_heads * head_dim values."""
    head_dim = config.head_dim or config.d_model // config.n_heads
    return 2 * config.n_layers * (config.n_kv_heads or config.n_heads) * head_dim * BYTES_PER_VALUE


@torch.no_grad()
def decode_tokens_per_s(model, prompt: list[int], new_tokens: int, repeats: int) -> float:
    generate(model, [prompt], max_new_tokens=new_tokens, eos_token_id=None)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        generate(model, [prompt], max_new_tokens=new_tokens, eos_token_id=None)
        times.append(time.perf_counter() - start)
    return new_tokens / statistics.median(times)


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, _, steps, batch, seq_len, new_tokens, repeats = SCALE[scale]
    spec = TrainSpec(preset=preset, overrides={"n_kv_heads": arm.params["n_kv_heads"]}, steps=steps,
                     batch_size=batch, seq_len=seq_len, seed=seed)
    trained = train(spec, workdir)
    prompt = list(range(3, 3 + seq_len // 4))  # decode speed does not depend on which tokens
    return lm_record(trained, every=max(1, steps // 50), kv_bytes_per_token=kv_bytes_per_token(trained.config),
                     decode_tokens_per_s=decode_tokens_per_s(trained.model, prompt, new_tokens, repeats))


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("kv_bytes_per_token", "KV cache bytes / token", 0), ("val_loss", "val loss", 3),
                                 ("decode_tokens_per_s", "decode tokens/s", 1), ("params", "params", 0)],
                          first="attention")
    names = list(runs)
    mha, mqa = names[0], names[-1]
    loss = {a: values(runs, a, "val_loss") for a in names}
    speed = {a: values(runs, a, "decode_tokens_per_s") for a in names}
    shrink = stats.mean(values(runs, mha, "kv_bytes_per_token")) / stats.mean(values(runs, mqa, "kv_bytes_per_token"))
    gqa = [a for a in names if a.startswith("gqa")]
    verdict = (
        f"The KV cache shrinks exactly as designed: MQA's is {shrink:.0f}x smaller than MHA's. "
        f"Quality: {stats.compare(mqa, loss[mqa], mha, loss[mha], 'validation loss')} "
        + " ".join(stats.compare(a, loss[a], mha, loss[mha], "validation loss") for a in gqa)
        + f" Decode speed: {stats.compare(mqa, speed[mqa], mha, speed[mha], 'tokens/s', lower_is_better=False, digits=1)} "
        f"The GQA paper (Ainslie et al. 2023, table 1, T5-XXL) reports {v('gqa-t1/mha-xxl/time')} s per sample for "
        f"MHA, {v('gqa-t1/mqa-xxl/time')} s for MQA and {v('gqa-t1/gqa-8-xxl/time')} s for GQA-8, at average scores "
        f"{v('gqa-t1/mha-xxl/average')}, {v('gqa-t1/mqa-xxl/average')} and {v('gqa-t1/gqa-8-xxl/average')}: MQA/GQA "
        "decode much faster at a small loss in "
        "quality, GQA closer to MHA. Their speed-up comes from memory bandwidth at long contexts and large batches, "
        "where the cache outweighs the weights; at batch 1 and the short contexts of this study the cache is far "
        "smaller than the model's weights, so little decode speed-up is expected and the loss gap mostly "
        "reflects the fewer K/V parameters of a model trained for minutes."
    )
    plots = [PlotSpec("kv_cache.png", "KV cache bytes per token of context", "bar", "kv_bytes_per_token",
                      ylabel="bytes"),
             PlotSpec("val_loss.png", "validation loss", "bar", "val_loss", ylabel="loss"),
             PlotSpec("decode.png", "batch-1 greedy decode", "bar", "decode_tokens_per_s", ylabel="tokens / s"),
             PlotSpec("loss.png", "training loss (mean over seeds)", "curve", "loss", "step", "loss")]
    return Summary(columns, rows, verdict, plots,
                   {"val_loss": means(runs, "val_loss"), "decode_tokens_per_s": means(runs, "decode_tokens_per_s"),
                    "kv_bytes_per_token": means(runs, "kv_bytes_per_token")})


EXPERIMENT = Experiment(
    name="attention-sharing",
    claim="sharing key/value heads (GQA, MQA) shrinks the KV cache and speeds decoding at little loss in quality",
    paper="Shazeer 2019 (Fast Transformer Decoding: One Write-Head is All You Need): MQA decodes several times "
          "faster with a small quality drop (no figures quoted). "
          + cite(*(f"gqa-t1/{name}/{metric}" for metric in ("time", "average")
                   for name in ("mha-xxl", "mqa-xxl", "gqa-8-xxl"))),
    runtime="~2 min",
    arms=arms, run=run, summarize=summarize,
)
