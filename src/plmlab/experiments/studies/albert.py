"""`albert`: ALBERT's two parameter reductions, each alone and together, against BERT of equal width.

Factorised embeddings (Lan et al. 2020, section 3.1): vocab x E, then E -> H, instead of
vocab x H. Cross-layer sharing: one block's weights applied at every layer. Both cut
parameters; sharing does not cut the computation per token (it still runs every layer). The paper
measured ALBERT-large training faster than BERT-large of the same width (table 2: "less
communication and fewer computations"), while the loss per step may suffer. All four arms are the
same bert preset under MLM with only `embedding_dim` and `shared_layers` switched.
"""

from __future__ import annotations

from pathlib import Path

from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

SCALE = {  # preset, factorised E, steps, batch, seq_len
    "smoke": ("bert-tiny", 16, 6, 4, 32),
    "default": ("bert-mini", 64, 80, 16, 64),
    "large": ("bert-mini", 64, 3000, 64, 128),
}


def arms(scale: str) -> list[Arm]:
    e = SCALE[scale][1]
    return [Arm("bert", {"embedding_dim": None, "shared_layers": False}),
            Arm("factorised", {"embedding_dim": e, "shared_layers": False}),
            Arm("shared", {"embedding_dim": None, "shared_layers": True}),
            Arm("albert", {"embedding_dim": e, "shared_layers": True})]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, _, steps, batch, seq_len = SCALE[scale]
    trained = train(TrainSpec(preset=preset, objective="mlm", overrides=dict(arm.params), steps=steps,
                              batch_size=batch, seq_len=seq_len, seed=seed), workdir)
    return lm_record(trained, every=max(1, steps // 50))


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("params", "params", 0), ("step_seconds", "s / step", 4),
                                 ("val_loss", "val loss", 3), ("val_mlm_accuracy", "val MLM acc.", 3)])
    p = {a: stats.mean(values(runs, a, "params")) for a in runs}
    t = {a: values(runs, a, "step_seconds") for a in runs}
    loss = {a: values(runs, a, "val_loss") for a in runs}
    verdict = (
        f"ALBERT (Lan et al. 2020) cuts parameters, not width: at equal width ALBERT-large has "
        f"{v('albert-t2/albert-large/params')} parameters to BERT-large's {v('albert-t2/bert-large/params')} and "
        f"iterated through the data {v('albert-t2/albert-large/speed')} as fast on the same TPUs (table 2; only the "
        f"wider ALBERT-xxlarge is slower, {v('albert-t2/albert-xxlarge/speed')}); sharing costs accuracy (table 4, "
        f"E = 768: not shared {v('albert-t4/not-shared-768/avg')}, all shared {v('albert-t4/all-shared-768/avg')}). "
        f"Here ALBERT (both reductions) has {p['albert'] / p['bert']:.0%} of BERT's parameters "
        f"(factorised alone {p['factorised'] / p['bert']:.0%}, shared alone {p['shared'] / p['bert']:.0%}). "
        f"Step time: {stats.compare('albert', t['albert'], 'bert', t['bert'], 'seconds per step', digits=4)} "
        "The paper credits ALBERT-large's speed-up to 'less communication and fewer computations': sharing removes "
        "no matrix multiplication, while the factorised embedding makes the vocabulary-wide projection E wide "
        "instead of H wide, at the cost of one E -> H projection; on one CPU only the computation can show. "
        f"Loss per step: {stats.compare('bert', loss['bert'], 'shared', loss['shared'], 'validation loss')} "
        f"{stats.compare('bert', loss['bert'], 'factorised', loss['factorised'], 'validation loss')} "
        "Early in training a shared stack can keep up (fewer parameters to fit) while the paper's quality gap "
        "appears at convergence, so a short run may show no loss from sharing."
    )
    plots = [PlotSpec("loss.png", "MLM loss per step (mean over seeds)", "curve", "loss", "step", "loss"),
             PlotSpec("loss_vs_seconds.png", "MLM loss per training second", "curve", "loss_vs_seconds", "seconds", "loss"),
             PlotSpec("params.png", "parameters", "bar", "params"),
             PlotSpec("step_time.png", "seconds per step", "bar", "step_seconds", ylabel="s / step")]
    return Summary(columns, rows, verdict, plots,
                   {m: means(runs, m) for m in ("params", "step_seconds", "val_loss")})


EXPERIMENT = Experiment(
    name="albert",
    claim="ALBERT's factorised embeddings and layer sharing cut parameters, not step time, and sharing costs loss",
    paper=cite("albert-t2/bert-large/params", "albert-t2/albert-large/params", "albert-t2/bert-large/speed",
               "albert-t2/albert-large/speed", "albert-t2/albert-xxlarge/speed", "albert-t2/bert-large/avg",
               "albert-t2/albert-large/avg", "albert-t4/not-shared-768/avg", "albert-t3/not-shared-128/avg",
               "albert-t4/all-shared-768/avg", "albert-t4/all-shared-128/avg"),
    runtime="~2 min",
    arms=arms, run=run, summarize=summarize,
    seeds={"smoke": 1, "default": 2, "large": 3},
)
