"""`norm-placement`: Post-LN vs Pre-LN vs DeepNorm as depth grows, with and without warm-up.

Post-LN (the original Transformer, BERT, GPT-1) normalises after the residual add; Pre-LN (GPT-2
and most models since) normalises each sublayer's input and leaves the residual stream alone.
Xiong et al. (2020, "On Layer Normalization in the Transformer Architecture") show that at
initialisation Post-LN's gradients near the output are large, so it needs a learning-rate
warm-up and still trains worse as depth grows, while Pre-LN trains without warm-up. DeepNorm
(Wang et al. 2022, "DeepNet") keeps Post-LN's placement but up-weights the residual (alpha) and
down-scales the init (beta), and trains 1000-layer models stably.

Every arm is the same gpt preset with `norm_placement` (and a final norm only for Pre-LN, as a
Post-LN stack ends in a norm already) and `n_layers` changed, trained with the same learning
rate, with warm-up over the first fifth of the steps or none. The trainer skips a step whose
loss or gradient is non-finite (the weights stay finite) and is told here never to stop on them,
so every run finishes; a run *fails* when its final validation loss is not at least 10 % below
its first step's loss. The table reports failures, skipped steps and the final loss.
"""

from __future__ import annotations

import math
from pathlib import Path

from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..harness import TrainSpec, train
from ..paper_figures import cite
from ..tables import lm_record, means, values

SCALE = {  # preset, depths, steps, batch, seq_len, lr
    "smoke": ("gpt-tiny", (2,), 6, 4, 32, 3e-3),
    "default": ("gpt-tiny", (2, 8), 80, 16, 64, 3e-3),
    "large": ("gpt-mini", (6, 12, 24), 2000, 64, 256, 1e-3),
}
PLACEMENTS = ("post", "pre", "deepnorm")
LEARNED = 0.9  # a run that ends above 90 % of its first loss did not train


def arms(scale: str) -> list[Arm]:
    return [Arm(f"{placement}-L{depth}-{'warmup' if warm else 'nowarmup'}",
                {"norm_placement": placement, "n_layers": depth, "warmup": warm})
            for depth in SCALE[scale][1] for warm in (True, False) for placement in PLACEMENTS]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, _, steps, batch, seq_len, lr = SCALE[scale]
    p = arm.params
    spec = TrainSpec(preset=preset, steps=steps, batch_size=batch, seq_len=seq_len, seed=seed, lr=lr, max_bad_steps=steps + 1,
                     warmup=max(1, steps // 5) if p["warmup"] else 0,
                     overrides={"norm_placement": p["norm_placement"], "n_layers": p["n_layers"],
                                "final_norm": p["norm_placement"] == "pre"})
    trained = train(spec, workdir)
    first, final = trained.curve[0]["loss"], trained.val_loss
    failed = not (math.isfinite(first) and math.isfinite(final) and final < LEARNED * first)
    skipped = sum(not math.isfinite(point["loss"]) for point in trained.curve)
    return lm_record(trained, every=max(1, steps // 50), failed=float(failed), skipped_steps=skipped)


def finite_losses(runs: dict[str, list[dict]], arm: str) -> list[float]:
    return [r["metrics"]["val_loss"] for r in runs[arm] if math.isfinite(r["metrics"]["val_loss"])]


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns = ["arm", "failed runs", "skipped steps", "val loss (finite runs)"]
    rows = []
    for arm in runs:
        losses = finite_losses(runs, arm)
        rows.append([arm, f"{int(sum(values(runs, arm, 'failed')))} / {len(runs[arm])}",
                     str(int(sum(values(runs, arm, "skipped_steps")))), stats.fmt_ci(losses) if losses else "-"])
    deepest = max(int(a.split("-L")[1].split("-")[0]) for a in runs)
    sentences = []
    for warm in ("nowarmup", "warmup"):
        post, pre = f"post-L{deepest}-{warm}", f"pre-L{deepest}-{warm}"
        a, b = finite_losses(runs, pre), finite_losses(runs, post)
        if a and b:
            sentences.append(f"At {deepest} layers, {warm.replace('no', 'no ')}: "
                             + stats.compare("Pre-LN", a, "Post-LN", b, "validation loss"))
    failures = {p: sum(sum(values(runs, a, "failed")) for a in runs if a.startswith(p + "-")) for p in PLACEMENTS}
    total = {p: sum(len(runs[a]) for a in runs if a.startswith(p + "-")) for p in PLACEMENTS}
    verdict = (
        "Xiong et al. report that Post-LN needs warm-up and degrades with depth while Pre-LN trains without "
        "warm-up, and Wang et al. that DeepNorm makes Post-LN stable at any depth. Failed runs: "
        + ", ".join(f"{p} {int(failures[p])} of {total[p]}" for p in PLACEMENTS) + ". "
        + " ".join(sentences)
        + " With gradient clipping (on here, as in every plmlab run) and runs this short, outright "
        "divergence is rare at these depths; the gap in final loss between placements, and whether it grows "
        "from the shallow to the deep arms, is the measurable part of the claim at this scale."
    )
    plots = [PlotSpec("val_loss.png", "validation loss", "bar", "val_loss", ylabel="loss"),
             PlotSpec("failed.png", "fraction of runs that failed to train", "bar", "failed", ylabel="fraction"),
             PlotSpec("loss.png", "training loss (mean over seeds)", "curve", "loss", "step", "loss")]
    return Summary(columns, rows, verdict, plots, {"failed": means(runs, "failed"), "failures": failures})


EXPERIMENT = Experiment(
    name="norm-placement",
    claim="Post-LN needs warm-up and gets worse with depth; Pre-LN and DeepNorm train stably",
    paper="Xiong et al. 2020 (On Layer Normalization in the Transformer Architecture, ICML): Pre-LN trains "
          "without warm-up and faster (no figures quoted). " + cite("deepnet/depth"),
    runtime="~3 min",
    arms=arms, run=run, summarize=summarize,
)
