"""Fine-tuned classifiers and taggers: accuracy, macro-F1, a confusion matrix, entity-level F1.

The data files are fine-tuning's (data/records.py, read by both): classification takes CSV or
JSONL with `text`, optional `text_pair` and `label`; token classification JSONL with `tokens`
and `labels`. Predictions come from the pipelines (plmlab.pipelines), so an evaluation labels
exactly as `plmlab classify` / `plmlab tag` do.

Entities follow seqeval's default mode (conlleval; IOB2, `strict=False`): chunks are read by
`get_entities`' rules from the tags of all sentences joined with an `O` between them, and
precision / recall / F1 are micro-averaged over exact (type, start, end) matches.
"""

from __future__ import annotations

import time

import numpy as np
import torch

# fine-tuning's readers, under the names evaluation has always used
from ..data.records import read_labelled_texts as read_classification
from ..data.records import read_tagged_words as read_token_classification
from ..errors import PlmlabError
from ..pipelines import TextClassification, TokenClassification
from .result import EvalResult


def _check_labels(gold: list[str], names: list[str], path_of) -> None:
    known = set(names)
    for i, label in enumerate(gold):
        if label not in known:
            raise PlmlabError(f"{path_of(i)}: label {label!r} is not one the model knows ({', '.join(names)})")


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, n_classes: int) -> float:
    """Mean over classes present in gold or predictions of 2PR / (P + R)."""
    scores = []
    for c in range(n_classes):
        tp = int(((pred == c) & (gold == c)).sum())
        fp, fn = int(((pred == c) & (gold != c)).sum()), int(((pred != c) & (gold == c)).sum())
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


def confusion(gold: list[str], pred: list[str], names: list[str]) -> list[list[int]]:
    """matrix[i][j] = items of gold label names[i] predicted as names[j]."""
    index = {n: i for i, n in enumerate(names)}
    matrix = np.zeros((len(names), len(names)), dtype=np.int64)
    for g, p in zip(gold, pred):
        matrix[index[g], index[p]] += 1
    return matrix.tolist()


def evaluate_classification(model, tokenizer, records: list[dict]) -> EvalResult:
    """Accuracy, macro-F1 (fine-tuning's definition) and the confusion matrix, labels by name."""
    pipe = TextClassification(model, tokenizer)
    names = list(model.config.label_names)
    gold = [r["label"] for r in records]
    _check_labels(gold, names, lambda i: records[i]["_where"])
    started = time.perf_counter()
    results = pipe([{"text": r["text"], "text_pair": r["text_pair"]} for r in records])
    seconds = time.perf_counter() - started
    pred = [r["label"] for r in results]
    index = {n: i for i, n in enumerate(names)}
    p, g = torch.tensor([index[x] for x in pred]), torch.tensor([index[x] for x in gold])
    metrics = {"accuracy": float((p == g).float().mean()), "macro_f1": macro_f1(p, g, len(names)),
               "n": len(records), "confusion_matrix": {"labels": names, "matrix": confusion(gold, pred, names)},
               "items_per_s": len(records) / max(seconds, 1e-9)}
    items = [{"index": i, "label": gl, "predicted": r["label"], "score": r["score"], "correct": gl == r["label"]}
             for i, (gl, r) in enumerate(zip(gold, results))]
    return EvalResult("classification", metrics, items)


# --- seqeval's chunk rules (conlleval), as functions of (previous tag, tag) ---------------------
_ENDS = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}


def _split(label: str) -> tuple[str, str]:
    """(tag, type): "B-PER" -> ("B", "PER"); "O" -> ("O", "_") as seqeval reads a prefix tag."""
    return label[0], label[1:].split("-", maxsplit=1)[-1] or "_"


def get_entities(sequences: list[list[str]]) -> set[tuple[str, int, int]]:
    """(type, first, last) of every chunk of the sentences joined with "O" (seqeval's offsets)."""
    flat = [label for seq in sequences for label in [*seq, "O"]] + ["O"]
    prev_tag, prev_type, begin, chunks = "O", "", 0, set()
    for i, label in enumerate(flat):
        tag, kind = _split(label)
        if prev_tag in "ES" or (prev_tag, tag) in _ENDS or (prev_tag not in "O." and prev_type != kind):
            chunks.add((prev_type, begin, i - 1))
        if tag in "BS" or (prev_tag, tag) in _STARTS or (tag not in "O." and prev_type != kind):
            begin = i
        prev_tag, prev_type = tag, kind
    return chunks


def entity_scores(gold: list[list[str]], pred: list[list[str]]) -> dict[str, float]:
    """Micro precision, recall and F1 over exact entity matches (0 where undefined, as seqeval)."""
    true, found = get_entities(gold), get_entities(pred)
    hit = len(true & found)
    precision = hit / len(found) if found else 0.0
    recall = hit / len(true) if true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"entity_precision": precision, "entity_recall": recall, "entity_f1": f1,
            "entities": len(true), "entities_predicted": len(found)}


def evaluate_token_classification(model, tokenizer, records: list[dict]) -> EvalResult:
    """Token (word) accuracy and entity-level precision / recall / F1 of a tagger."""
    pipe = TokenClassification(model, tokenizer, ignore_labels=())
    names = list(model.config.label_names)
    for r in records:
        _check_labels(r["labels"], names, lambda i, r=r: r["_where"])
    started = time.perf_counter()
    results = pipe([{"tokens": r["tokens"]} for r in records])
    seconds = time.perf_counter() - started
    gold = [r["labels"] for r in records]
    pred = [[w["label"] for w in res["words"]] for res in results]
    words = sum(len(g) for g in gold)
    correct = sum(a == b for g, p in zip(gold, pred) for a, b in zip(g, p))
    metrics = {"token_accuracy": correct / words, **entity_scores(gold, pred), "n": len(records), "words": words,
               "items_per_s": len(records) / max(seconds, 1e-9)}
    items = [{"index": i, "labels": g, "predicted": p, "correct": sum(a == b for a, b in zip(g, p))}
             for i, (g, p) in enumerate(zip(gold, pred))]
    return EvalResult("token-classification", metrics, items)
