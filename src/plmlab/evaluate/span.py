"""T5: target-token accuracy and loss over span-corrupted text (Raffel et al. 2020, section 3.1.4).

The texts become the pretraining stream (`doc0 </s> doc1 </s> ...`), cut into windows of the
objective's raw length, and each window is corrupted by the span-corruption objective's own code
with the generator of (seed, 0, window index): the same examples at every evaluation. The model
is scored as in training: teacher-forced targets (sentinels, the dropped spans, </s>).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..objectives import example_rng
from ..families.fits import Fits
from ..objectives.span import SpanCorruption
from ..pipelines.loading import model_device
from .result import EvalResult


def stream_windows(tokenizer, texts: list[str], length: int) -> list[np.ndarray]:
    """The pretraining stream of `texts` in windows of `length` tokens (the last may be shorter)."""
    parts = [np.asarray(tokenizer.encode(t, add_special_tokens=False) + [tokenizer.eos_id], dtype=np.int64)
             for t in texts]
    stream = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    return [stream[i:i + length] for i in range(0, len(stream), length) if len(stream[i:i + length]) >= 2]


@torch.no_grad()
def evaluate_span_corruption(model, tokenizer, texts: list[str], seed: int = 0, batch_size: int = 16,
                             max_length: int | None = None, noise_density: float = 0.15,
                             mean_span_length: float = 3.0) -> EvalResult:
    """Target-token accuracy, loss and perplexity of the span-corruption targets of `texts`."""
    config = model.config
    Fits(arch="encoder-decoder", head="lm").require("--task span-corruption", config)
    if getattr(model, "head", None) is None:
        raise PlmlabError("--task span-corruption needs an encoder-decoder with an LM head (T5); this one has none")
    seq_len = max_length or config.max_positions
    if max_length is not None and max_length > config.max_positions:
        raise PlmlabError(f"--max-length {max_length} is beyond the model's context ({config.max_positions} positions)")
    objective = SpanCorruption(tokenizer, seq_len, noise_density=noise_density,
                               mean_noise_span_length=mean_span_length)
    examples = [objective.corrupt_ids(w, example_rng(seed, 0, i))
                for i, w in enumerate(stream_windows(tokenizer, texts, objective.raw_length))]
    if not examples:
        raise PlmlabError("no tokens to score: the texts are empty")
    device = model_device(model)
    total = correct = count = 0.0
    items, started = [], time.perf_counter()
    for i in range(0, len(examples), batch_size):
        batch = {k: v.to(device) for k, v in objective.collate(examples[i:i + batch_size]).items()}
        labels = batch.pop("labels")  # (B, L), -100 on padding
        logits = model(**batch, decoder_input_ids=model.shift_right(labels)).logits.float()  # (B, L, V)
        nll = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none", ignore_index=IGNORE_INDEX)  # (B, L)
        keep = labels != IGNORE_INDEX
        hit = (logits.argmax(-1) == labels) & keep
        for b in range(len(labels)):
            n = int(keep[b].sum())
            items.append({"index": i + b, "targets": n, "loss": float(nll[b][keep[b]].sum()) / n,
                          "accuracy": int(hit[b].sum()) / n})
        total, correct, count = total + float(nll[keep].double().sum()), correct + int(hit.sum()), count + int(keep.sum())
    seconds = time.perf_counter() - started
    metrics = {"accuracy": correct / count, "loss": total / count, "perplexity": math.exp(total / count),
               "n": len(texts), "examples": len(examples), "targets": int(count),
               "tokens_per_s": sum(len(e["input_ids"]) for e in examples) / max(seconds, 1e-9)}
    return EvalResult("span-corruption", metrics, items)
