"""`vocab`: BPE vocabulary size against tokens per byte and bits per byte.

A bigger vocabulary merges more: fewer tokens per byte of text, so a fixed context holds more
text and a step of fixed tokens sees more bytes -- but the embedding and output tables grow and
every token is a harder, rarer prediction. Per-token losses are not comparable across
vocabularies (a token is a different amount of text), so the score is **bits per byte**:
the total negative log-likelihood of the validation documents in bits, divided by their UTF-8
bytes, which is the same quantity whatever the tokenizer.

Every arm is the same gpt preset with only `vocab_size` (and so its own byte-level BPE
tokenizer, trained once on the corpus and shared by the arm's seeds) changed; all train the same
steps of the same batch and sequence length, i.e. equal *tokens*, not equal bytes: the table
reports the bytes each arm saw so that difference stays visible.
"""

from __future__ import annotations

import math
from pathlib import Path

from ...evaluate.perplexity import evaluate_perplexity
from .. import stats
from ..base import Arm, Experiment, PlotSpec, Summary
from ..evals import held_out_texts
from ..harness import TrainSpec, train
from ..paper_figures import cite, v
from ..tables import lm_record, means, table, values

SCALE = {  # preset, vocabulary sizes, steps, batch, seq_len, validation documents scored
    "smoke": ("gpt-tiny", (300, 600), 6, 4, 32, 4),
    "default": ("gpt-mini", (512, 2048, 8192), 150, 16, 64, 40),
    "large": ("gpt-mini", (1024, 4096, 16384, 32768), 3000, 64, 256, 400),
}


def arms(scale: str) -> list[Arm]:
    return [Arm(f"v{size}", {"vocab_size": size}) for size in SCALE[scale][1]]


def run(arm: Arm, seed: int, scale: str, workdir: Path) -> dict:
    preset, _, steps, batch, seq_len, n_val = SCALE[scale]
    spec = TrainSpec(preset=preset, vocab_size=arm.params["vocab_size"], steps=steps, batch_size=batch,
                     seq_len=seq_len, seed=seed)
    trained = train(spec, workdir)
    texts = held_out_texts(spec.corpus, n_val)
    n_tokens = sum(len(trained.tokenizer.encode(t, add_special_tokens=False)) for t in texts)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    scored = evaluate_perplexity(trained.model, trained.tokenizer, texts, max_length=seq_len).metrics
    tokens_per_byte = n_tokens / n_bytes
    return lm_record(trained, every=max(1, steps // 50), vocab_size=arm.params["vocab_size"],
                     tokens_per_byte=tokens_per_byte, bits_per_byte=scored["bits_per_byte"],
                     bytes_seen=trained.curve[-1]["tokens"] / tokens_per_byte)


def summarize(runs: dict[str, list[dict]]) -> Summary:
    columns, rows = table(runs, [("tokens_per_byte", "tokens / byte", 3), ("bits_per_byte", "bits / byte", 3),
                                 ("val_loss", "val loss (nats / token)", 3), ("bytes_seen", "bytes trained on", 0),
                                 ("params", "params", 0), ("step_seconds", "s / step", 4)], first="vocabulary")
    names = list(runs)
    bpb = {arm: values(runs, arm, "bits_per_byte") for arm in names}
    best = min(names, key=lambda arm: stats.mean(bpb[arm]))
    smallest, largest = names[0], names[-1]
    tpb_small, tpb_large = (stats.mean(values(runs, a, "tokens_per_byte")) for a in (smallest, largest))
    verdict = (
        f"Compression behaves as expected: going from {smallest} to {largest} cuts tokens per byte from "
        f"{tpb_small:.3f} to {tpb_large:.3f} ({100 * (1 - tpb_large / tpb_small):.0f} % fewer tokens for the "
        f"same text). On bits per byte, the tokenizer-independent score, {best} is best here. "
        + " ".join(stats.compare(a, bpb[a], best, bpb[best], "bits per byte") for a in names if a != best)
        + " The literature (GPT-2's byte-level BPE, Radford et al. 2019; Tao et al. 2024 on vocabulary scaling) "
        "finds larger vocabularies help once the model and data are large enough to learn the rare tokens' "
        "embeddings, but not always: RoBERTa (section 4.4) found its larger 50K byte-level BPE "
        f"{v('roberta-s44/end-task')} than BERT's 30K and kept it for universality, not quality. "
        + ("Here too the largest vocabulary wins, in line with that. " if best == largest else
           "Here a smaller vocabulary wins: at this scale the output table of a large vocabulary is a big share "
           "of the parameters and many of its rows are seen a handful of times, the likely reason, not a "
           "contradiction of the large-scale result. ")
        + "Equal tokens per arm means the larger vocabularies trained on more bytes (column 'bytes trained "
        "on'), which favours them."
    )
    plots = [PlotSpec("bits_per_byte.png", "validation bits per byte", "bar", "bits_per_byte", ylabel="bits / byte"),
             PlotSpec("tokens_per_byte.png", "tokens per byte of validation text", "bar", "tokens_per_byte",
                      ylabel="tokens / byte"),
             PlotSpec("loss.png", "training loss (nats per token, not comparable across arms)", "curve", "loss",
                      "step", "loss")]
    results = {"bits_per_byte": means(runs, "bits_per_byte"), "tokens_per_byte": means(runs, "tokens_per_byte"),
               "best": best, "nats_per_byte": {a: stats.mean(bpb[a]) * math.log(2) for a in names}}
    return Summary(columns, rows, verdict, plots, results)


EXPERIMENT = Experiment(
    name="vocab",
    claim="a larger BPE vocabulary packs more text per token; whether it models text better (bits per byte) "
          "depends on scale",
    paper="GPT-2 (Radford et al. 2019) and Tao et al. 2024 ('Scaling Laws with Vocabulary') report fewer tokens "
          "per byte and better loss per byte with larger vocabularies at large scale, with an optimal vocabulary "
          "that grows with compute (no figures quoted). Against it: "
          + cite("roberta-s44/end-task", "roberta-s44/params-base", "roberta-s44/params-large"),
    runtime="~2 min",
    arms=arms, run=run, summarize=summarize,
)
