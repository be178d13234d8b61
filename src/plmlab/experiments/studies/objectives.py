"""`objectives`: causal LM vs masked LM vs span corruption vs GLM blank infilling at equal compute.

Each objective trains the tiny preset of the family it was made for (GPT for CLM, BERT for
MLM, T5 for span corruption, GLM for blank infilling) for the same steps x batch x sequence
length, and is then scored on the same downstream tasks: the built-in multiple-choice suite,
zero-shot, through plmlab.evaluate (log-likelihood for decoders, pseudo-log-likelihood for
the encoder, the decoder's likelihood for T5, GLM's blank scoring). Each objective's own
validation loss is reported too, but those are not comparable: each predicts a different
target (the next token, 15 % masked tokens, sentinel spans, blanks).
"""

from __future__ import annotations

from pathlib import Path

from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..evals import suite
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

ARMS = {"clm": "gpt-tiny", "mlm": "bert-tiny", "span-corruption": "t5-tiny", "glm": "glm-tiny"}
SCALE = {  # steps, batch, seq_len, suite items per task, corpus
    "smoke": (6, 4, 32, 8, "builtin"),
    "default": (300, 16, 64, 60, "builtin"),
    "large": (5000, 64, 128, 300, "builtin:docs"),
}
MINI = {"clm": "gpt-mini", "mlm": "bert-mini", "span-corruption": "t5-mini", "glm": "glm-mini"}


def arms(scale: str) -> list[Arm]:
    presets = MINI if scale == "large" else ARMS
    return [Arm(objective, {"objective": objective, "preset": presets[objective]}) for objective in ARMS]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    steps, batch, seq_len, items, corpus = SCALE[scale]
    trained = train(TrainSpec(preset=arm.params["preset"], objective=arm.params["objective"], steps=steps,
                              batch_size=batch, seq_len=seq_len, seed=seed, corpus=corpus), workdir)
    return lm_record(trained, every=max(1, steps // 50), **suite(trained, shots=(0,), n_items=items, seed=seed))


def summarize(runs: dict[str, list[dict]]) -> Summary:
    task_columns = sorted(k for k in runs["clm"][0]["metrics"] if k.endswith("@0"))
    columns, rows = table(runs, [("core", "CORE (0-shot)", 3)] + [(k, k.removesuffix("@0"), 3) for k in task_columns]
                          + [("val_loss", "own val loss", 3), ("params", "params", 0)], first="objective")
    core = {a: values(runs, a, "core") for a in runs}
    best = max(core, key=lambda a: stats.mean(core[a]))
    verdict = (
        f"The papers compare objectives at scale, fine-tuned: in T5 (Raffel et al. 2020) the encoder-decoder with "
        f"span corruption scores {v('t5-t2/enc-dec-denoising/glue')} on GLUE, a BERT-style denoising objective "
        f"{v('t5-t4/bert-style/glue')} (table 4), and a decoder-only causal LM {v('t5-t2/decoder-lm/glue')} "
        "(table 2); GLM (Du et al. 2022) reports blank infilling ahead of BERT on SuperGLUE at equal size; GPT-style "
        "CLM is the one that makes zero-shot scoring natural. "
        f"Here the best zero-shot CORE is {best}'s ({stats.fmt_ci(core[best])}; 0 is chance). "
        f"{stats.compare('clm', core['clm'], 'mlm', core['mlm'], 'CORE', lower_is_better=False)} "
        f"{stats.compare('clm', core['clm'], 'span-corruption', core['span-corruption'], 'CORE', lower_is_better=False)} "
        f"{stats.compare('clm', core['clm'], 'glm', core['glm'], 'CORE', lower_is_better=False)} "
        "Tiny models trained for minutes sit near chance on these tasks, so the scores mostly measure how each "
        "family's scoring rule behaves on an undertrained model rather than what the objective taught it; the "
        "papers' orderings are claims about fine-tuned models of BERT-base size and up. Fine-tuning comparisons "
        "across the four are left out: plmlab's classification fine-tuning takes encoders only (see the masking "
        "study for the encoder's)."
    )
    plots = [PlotSpec("core.png", "built-in suite CORE, zero-shot", "bar", "core"),
             PlotSpec("loss.png", "own training loss (not comparable across objectives)", "curve", "loss", "step", "loss")]
    return Summary(columns, rows, verdict, plots, {"core": means(runs, "core"), "val_loss": means(runs, "val_loss")})


EXPERIMENT = Experiment(
    name="objectives",
    claim="CLM, MLM, span corruption and GLM blank infilling at equal compute: own losses and the same downstream tasks",
    paper=cite("t5-t2/enc-dec-denoising/glue", "t5-t4/bert-style/glue", "t5-t4/prefix-lm/glue", "t5-t2/decoder-lm/glue")
          + ". Du et al. 2022 (GLM), Table 1: GLM-Large ahead of BERT-Large on SuperGLUE (no figures quoted: not "
            "checked against a stored copy of the paper)",
    runtime="~2 min",
    arms=arms, run=run, summarize=summarize,
    seeds={"smoke": 1, "default": 2, "large": 3},
    corpus={"smoke": "builtin", "default": "builtin", "large": "builtin:docs"},
)
