"""`nsp-vs-sop`: next-sentence prediction against sentence-order prediction, cross-evaluated.

NSP (BERT) asks whether segment B followed A or came from another document; SOP (ALBERT) asks
whether A and B, two consecutive segments of one document, are in order or swapped. ALBERT's
argument (Lan et al. 2020, section 3.1 and table 5): a random B usually comes from another
*topic*, so NSP can be solved by topic alone, while SOP, whose two orders share the topic,
needs coherence -- so an SOP model solves NSP, but an NSP model is at chance on SOP.

Each arm pretrains the same bert preset on one pair task and is scored on both. Beside the
models, a topic-only baseline with no model: "B follows A" when the segments share many word
pieces (threshold and direction fitted on half of the validation pairs, scored on the other).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..evals import objective_eval, pair_batches
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

SCALE = {  # preset, pair objectives trained (the pair task alone below large: a clearer signal), steps, batch, seq
    "smoke": ("bert-tiny", {"nsp": "nsp", "sop": "sop"}, 6, 4, 64),
    "default": ("bert-tiny", {"nsp": "nsp", "sop": "sop"}, 300, 16, 64),
    "large": ("bert-mini", {"nsp": "mlm+nsp", "sop": "mlm+sop"}, 3000, 64, 128),
}
EVAL_BATCHES = 8
LABEL = {"nsp": "next_sentence_label", "sop": "sentence_order_label"}


def arms(scale: str) -> list[Arm]:
    preset, objectives = SCALE[scale][:2]
    return [Arm(task, {"objective": objectives[task]}) for task in ("nsp", "sop")]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, _, steps, batch, seq_len = SCALE[scale]
    trained = train(TrainSpec(preset=preset, objective=arm.params["objective"], steps=steps, batch_size=batch,
                              seq_len=seq_len, seed=seed, eval_batches=EVAL_BATCHES), workdir)
    scores = {f"on_{task}": objective_eval(trained, task, batches=EVAL_BATCHES)[f"val_{task}_accuracy"]
              for task in ("nsp", "sop")}
    topic = {f"topic_{task}": topic_baseline(pair_batches(trained, task, EVAL_BATCHES), LABEL[task])
             for task in ("nsp", "sop")}
    return lm_record(trained, every=max(1, steps // 50), **scores, **topic)


def topic_baseline(batches: list[dict], label_key: str) -> float:
    """Accuracy of guessing the pair label from the word-piece overlap of A and B alone."""
    overlaps, labels = [], []
    for b in batches:
        for ids, types, mask, label in zip(b["input_ids"], b["token_type_ids"], b["attention_mask"], b[label_key]):
            ids, types, mask = ids.numpy(), types.numpy(), mask.numpy().astype(bool)
            a, bb = set(ids[mask & (types == 0)][1:].tolist()), set(ids[mask & (types == 1)].tolist())
            overlaps.append(len(a & bb) / max(1, len(a | bb)))  # Jaccard: the same for A, B and B, A
            labels.append(int(label))
    overlaps, labels = np.asarray(overlaps), np.asarray(labels)
    half = len(labels) // 2
    if half == 0:
        return 0.5
    cut = float(np.median(overlaps[:half]))
    rule = (overlaps > cut).astype(int)
    flip = np.mean(rule[:half] == labels[:half]) < 0.5  # the direction that fits the first half
    guess = 1 - rule if flip else rule
    return float(np.mean(guess[half:] == labels[half:]))


def _ranking(own_nsp: list[float], own_sop: list[float]) -> str:
    """Whether "NSP is the easier task" shows: only a difference beyond noise counts."""
    if stats.within_noise(own_nsp, own_sop) is not False:
        return ("The two own-task accuracies do not separate beyond noise (and sit near the labels' balance when a "
                "model has not learned its pair task), so this run cannot rank the tasks. ")
    if stats.mean(own_nsp) > stats.mean(own_sop):
        return "That NSP is the easier task reproduces. "
    return "That NSP is the easier task does not show here: the SOP model does better on its own task. "


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("on_nsp", "NSP acc.", 3), ("on_sop", "SOP acc.", 3),
                                 ("topic_nsp", "topic-only NSP", 3), ("topic_sop", "topic-only SOP", 3)],
                          first="trained on")
    nsp_on_sop, sop_on_nsp = values(runs, "nsp", "on_sop"), values(runs, "sop", "on_nsp")
    topic_nsp = stats.mean(values(runs, "nsp", "topic_nsp") + values(runs, "sop", "topic_nsp"))
    topic_sop = stats.mean(values(runs, "nsp", "topic_sop") + values(runs, "sop", "topic_sop"))
    verdict = (
        f"ALBERT (table 5) reports NSP-trained models at {v('albert-t5/nsp/on-nsp')} % on NSP but "
        f"{v('albert-t5/nsp/on-sop')} % on SOP, no better than a model trained with neither "
        f"({v('albert-t5/none/on-sop')} %), and SOP-trained ones at {v('albert-t5/sop/on-nsp')} % on NSP and "
        f"{v('albert-t5/sop/on-sop')} % on SOP. "
        f"Here the NSP model scores {stats.fmt_ci(values(runs, 'nsp', 'on_nsp'))} on NSP and "
        f"{stats.fmt_ci(nsp_on_sop)} on SOP; the SOP model {stats.fmt_ci(values(runs, 'sop', 'on_sop'))} on SOP and "
        f"{stats.fmt_ci(sop_on_nsp)} on NSP. "
        f"On SOP pairs: {stats.compare('the SOP model', values(runs, 'sop', 'on_sop'), 'the NSP model', nsp_on_sop, 'SOP accuracy', lower_is_better=False)} "
        f"The topic-only baseline (no model, word-piece overlap of A and B) gets {topic_nsp:.3f} on NSP and "
        f"{topic_sop:.3f} on SOP: "
        + ("well above chance on NSP and at chance on SOP, which is the notes' point -- NSP is solvable by topic alone, "
           "SOP is not. " if topic_nsp > 0.55 and abs(topic_sop - 0.5) < 0.05 else
           "not the clean split the argument predicts at this size of validation set. ")
        + f"Own task: {stats.compare('NSP (NSP model)', values(runs, 'nsp', 'on_nsp'), 'SOP (SOP model)', values(runs, 'sop', 'on_sop'), 'accuracy', lower_is_better=False)} "
        + _ranking(values(runs, "nsp", "on_nsp"), values(runs, "sop", "on_sop"))
        + f"The reverse transfer the paper shows (SOP model at {v('albert-t5/sop/on-nsp')} % on NSP) needs a model "
        "that has learned "
        "coherence, far more than minutes of a tiny model learn; expect it near chance at this scale."
    )
    plots = [PlotSpec("loss.png", "pair-task training loss (mean over seeds)", "curve", "loss", "step", "loss"),
             PlotSpec("on_sop.png", "accuracy on SOP pairs", "bar", "on_sop"),
             PlotSpec("on_nsp.png", "accuracy on NSP pairs", "bar", "on_nsp")]
    return Summary(columns, rows, verdict, plots, {m: means(runs, m) for m in ("on_nsp", "on_sop", "topic_nsp", "topic_sop")})


EXPERIMENT = Experiment(
    name="nsp-vs-sop",
    claim="SOP is harder than NSP; NSP is solvable by topic alone, so an NSP model fails SOP while SOP transfers",
    paper=cite(*(f"albert-t5/{trained}/on-{task}" for task in ("nsp", "sop") for trained in ("nsp", "sop", "none"))),
    runtime="~1 min",
    arms=arms, run=run, summarize=summarize,
)
