"""End-of-run demonstrations: what the model learned, shown the way its objective is used.

Each objective declares its demonstration by name (`Objective.demo`); `DEMOS` maps the name
to the function that runs it:

  fill-mask      (MLM)             a validation sentence with its middle word masked: top 5
  span-filling   (T5)              a validation sentence with a span replaced by <extra_id_0>,
                                   the decoder's output shown with its sentinels
  fill-blanks    (GLM)             a validation sentence with a span replaced by [MASK]

(Causal LMs declare none: they get a sampled continuation of --prompt, elsewhere.) The sentence is the first one of
the validation split with enough words, so the demonstration is the same at every run of a
corpus; decoding is greedy. Each takes well under a second on the tiny presets.
"""

from __future__ import annotations

import numpy as np
import torch

from ..generation import generate
from ..infill import fill_blanks
from ..objectives import get_objective
from ..objectives.masking import word_start_table
from ..pipelines import fill_mask

MIN_WORDS, MAX_TOKENS = 6, 40


def validation_sentence(tokenizer, data, min_words: int = MIN_WORDS, max_tokens: int = MAX_TOKENS):
    """(token ids, text) of the first validation sentence of `min_words`+ words and <= max_tokens tokens."""
    offsets = np.asarray(data.sent_offsets)
    fallback = None
    for s in range(len(offsets) - 1):
        ids = [int(t) for t in data.tokens[int(offsets[s]): int(offsets[s + 1])]]
        if not ids:
            continue
        if len(ids) > max_tokens:
            fallback = fallback or ids[:max_tokens]
            continue
        text = tokenizer.decode(ids).strip()
        if len(text.split()) >= min_words:
            return ids, text
    if fallback is not None:
        return fallback, tokenizer.decode(fallback).strip()
    return None


def demonstrate(model, tokenizer, objective: str, val_data, device, seed: int = 0) -> dict | None:
    """A demonstration record for summary.json, or None (the objective declares none, or there
    is nothing to show it on)."""
    run = DEMOS.get(get_objective(objective).demo)
    found = validation_sentence(tokenizer, val_data) if run is not None else None
    if found is None:
        return None
    model.eval()
    try:
        return run(model, tokenizer, found, device, seed)
    finally:
        model.train()


def _middle(n: int, width: int) -> tuple[int, int]:
    width = max(1, min(width, n - 2))
    start = max(1, (n - width) // 2)
    return start, start + width


def _fill_mask(model, tokenizer, found, device, seed: int) -> dict | None:
    if model.config.head != "mlm" or tokenizer.mask_id is None:
        return None  # no MLM head to ask, or no [MASK] to ask it with
    words = found[1].split()
    i, _ = _middle(len(words), 1)
    masked = " ".join(words[:i] + [tokenizer.special_tokens["mask"]] + words[i + 1:])
    with torch.no_grad():
        record = fill_mask(_OnDevice(model), tokenizer, masked, top_k=5, truncate=True)[0]
    preds = [{"token": p["token"], "score": round(float(p["score"]), 4)} for p in record["predictions"]]
    return {"kind": "fill-mask", "text": masked, "answer": words[i], "predictions": preds}


class _OnDevice:
    """The model, taking CPU tensors (fill_mask builds its inputs on the CPU)."""

    def __init__(self, model) -> None:
        self.model, self.config = model, model.config
        self.device = next(model.parameters()).device

    def __call__(self, **inputs):
        return self.model(**{k: v.to(self.device) for k, v in inputs.items()})


def _span_filling(model, tokenizer, found, device, seed: int) -> dict | None:
    if not tokenizer.sentinel_ids:
        return None
    ids = found[0]
    starts = word_start_table(tokenizer)
    words = [i for i, t in enumerate(ids) if t < len(starts) and starts[t]] + [len(ids)]  # word starts
    if len(words) >= 4:  # two whole words from the middle
        w, _ = _middle(len(words) - 1, 2)
        start, end = words[w], words[w + 2]
    else:
        start, end = _middle(len(ids), 3)
    sentinel, eos = tokenizer.sentinel_ids[0], tokenizer.eos_id
    inputs = ids[:start] + [sentinel] + ids[end:] + ([eos] if eos is not None else [])
    out = generate(model, torch.tensor([inputs], device=device), max_new_tokens=8, eos_token_id=eos)
    return {"kind": "span-filling",
            "input": tokenizer.decode(inputs, skip_special_tokens=False),
            "answer": tokenizer.decode(ids[start:end], skip_special_tokens=False),
            "output": tokenizer.decode(out[0].tolist(), skip_special_tokens=False)}


def _fill_blanks(model, tokenizer, found, device, seed: int) -> dict:
    words = found[1].split()
    start, end = _middle(len(words), 2)
    masked = " ".join(words[:start] + [tokenizer.special_tokens.get("mask", "[MASK]")] + words[end:])
    filled = fill_blanks(model, tokenizer, masked, max_new_tokens=8, seed=seed)
    return {"kind": "fill-blanks", "text": masked, "answer": " ".join(words[start:end]),
            "blanks": filled.blank_texts, "output": filled.text}


# Objective.demo -> the function that shows it: (model, tokenizer, (ids, text), device, seed) -> record.
DEMOS = {"fill-mask": _fill_mask, "span-filling": _span_filling, "fill-blanks": _fill_blanks}


def demo_text(demo: dict) -> list[str]:
    """Lines for the end-of-run summary."""
    if demo["kind"] == "fill-mask":
        top = ", ".join(f"{p['token']!r} {p['score']:.3f}" for p in demo["predictions"])
        return [f"fill-mask: {demo['text']!r} (answer {demo['answer']!r})", f"  top 5: {top}"]
    if demo["kind"] == "span-filling":
        return [f"span filling: {demo['input']!r} (answer {demo['answer']!r})", f"  decoder: {demo['output']!r}"]
    return [f"fill-blanks: {demo['text']!r} (answer {demo['answer']!r})", f"  filled: {demo['blanks']!r}"]
