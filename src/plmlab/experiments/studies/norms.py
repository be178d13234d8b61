"""`norms`: LayerNorm vs RMSNorm in the same pre-norm decoder -- step time and loss.

RMSNorm (Zhang & Sennrich 2019) drops LayerNorm's mean subtraction and bias: y = x / rms(x) * g.
The paper's claim is two-fold: quality on par with LayerNorm, and 7-64 % less running time
(of the whole model, on their GPU RNN/Transformer set-ups). Here both arms are the same
gpt preset with only `norm` switched (and no norm bias for RMSNorm, as it never has one).
"""

from __future__ import annotations

from pathlib import Path

from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

SCALE = {  # preset, steps, batch, seq_len
    "smoke": ("gpt-tiny", 8, 4, 32),
    "default": ("gpt-mini", 60, 16, 64),
    "large": ("gpt-mini", 2000, 64, 256),
}


def arms(scale: str) -> list[Arm]:
    return [Arm("layernorm", {"norm": "layernorm"}), Arm("rmsnorm", {"norm": "rmsnorm"})]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, steps, batch, seq_len = SCALE[scale]
    spec = TrainSpec(preset=preset, overrides={"norm": arm.params["norm"]}, steps=steps, batch_size=batch,
                     seq_len=seq_len, seed=seed)
    return lm_record(train(spec, workdir), every=max(1, steps // 50))


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("val_loss", "val loss", 3), ("train_loss", "final train loss", 3),
                                 ("step_seconds", "s / step", 4), ("params", "params", 0)])
    ln_t, rms_t = values(runs, "layernorm", "step_seconds"), values(runs, "rmsnorm", "step_seconds")
    saving = 100 * (1 - stats.mean(rms_t) / stats.mean(ln_t))
    spread = max((stats.mean_ci(t)[1] or 0.0) / stats.mean(t) for t in (ln_t, rms_t))
    noisy = (f"The step times vary by up to ±{100 * spread:.0f} % across seeds, so the machine's load changed "
             "during the run (the arms ran one after another): here they measure the load more than the norms. "
             if spread > 0.2 else "")
    verdict = (
        f"The paper reports RMSNorm matching LayerNorm's quality while cutting {v('rmsnorm/running-time')} of the "
        "running time. "
        f"Loss: {stats.compare('rmsnorm', values(runs, 'rmsnorm', 'val_loss'), 'layernorm', values(runs, 'layernorm', 'val_loss'), 'validation loss')} "
        f"Speed: RMSNorm's steps take {abs(saving):.1f} % {'less' if saving >= 0 else 'more'} time than "
        f"LayerNorm's: {stats.compare('rmsnorm', rms_t, 'layernorm', ln_t, 'seconds per step', digits=4)} "
        + noisy +
        "The quality half of the claim is what to expect here; the speed half mostly is not: in a small model "
        "on a CPU the norms are a sliver of a step's time (attention and the MLP matmuls dominate) and PyTorch "
        "fuses LayerNorm into one kernel while RMSNorm runs as a few elementwise ops, so a saving of the "
        "paper's size would be surprising and a difference of a few percent either way is what the machine "
        "(shared, noisy timing) can resolve."
    )
    plots = [PlotSpec("loss.png", "training loss (mean over seeds)", "curve", "loss", "step", "loss"),
             PlotSpec("step_time.png", "seconds per step", "bar", "step_seconds", ylabel="s / step")]
    return Summary(columns, rows, verdict, plots,
                   {"val_loss": means(runs, "val_loss"), "step_seconds": means(runs, "step_seconds")})


EXPERIMENT = Experiment(
    name="norms",
    claim="RMSNorm trains as well as LayerNorm and is faster per step",
    paper=cite("rmsnorm/running-time") + ", with quality comparable to LayerNorm's",
    runtime="~1 min",
    arms=arms, run=run, summarize=summarize,
)
