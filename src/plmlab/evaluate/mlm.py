"""Encoders: masked-token accuracy and pseudo-log-likelihood.

Each document's tokens are cut into pieces that fill the encoder's context and wrapped as MLM
pretraining wraps them ([CLS] piece [SEP], `<s> piece </s>`: the objective's own layout).

* Masked-token accuracy: the MLM objective corrupts each piece exactly as in pretraining (15 %
  selected, 80/10/10), with the generator of (seed, 0, piece index); accuracy of the argmax over
  the selected tokens.
* Pseudo-log-likelihood (Salazar et al. 2020, "Masked Language Model Scoring", section 2.1):
  PLL = sum over tokens t of log p(x_t | x with only t masked). Every non-special token is
  masked in turn; the masked copies of a piece go through the model in batches. Reported per
  token, and as pseudo-perplexity exp(-PLL / tokens) (their eq. 4).
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..errors import PlmlabError
from ..masks import IGNORE_INDEX
from ..objectives import example_rng
from ..families.fits import Fits
from ..objectives.mlm import MaskedLM
from ..pipelines.loading import model_device
from .result import EvalResult


def check_encoder(model, task: str) -> None:
    Fits(arch="encoder", head=("mlm", "lm")).require(task, model.config)  # "lm": XLM's tied pred_layer
    if getattr(model, "head", None) is None:
        raise PlmlabError(f"{task} needs an encoder with its MLM head (BERT, RoBERTa, ALBERT); this one has none")


def pieces(tokenizer, texts: list[str], objective: MaskedLM) -> list[tuple[int, dict]]:
    """(document, wrapped example) for every context-sized piece of every document."""
    budget = objective.layout.max_tokens
    out = []
    for d, text in enumerate(texts):
        ids = np.asarray(tokenizer.encode(text, add_special_tokens=False), dtype=np.int64)
        for start in range(0, len(ids), budget):
            out.append((d, objective.layout.from_ids(ids[start:start + budget], None)))
    return out


def corrupted(objective: MaskedLM, example: dict, rng: np.random.Generator) -> dict:
    """The example with the objective's masking (input_ids corrupted, labels at the selected tokens)."""
    made = objective.masker.corrupt(example["input_ids"], rng)
    return {**example, "input_ids": made["input_ids"], "labels": made["labels"]}


@torch.no_grad()
def masked_accuracy(model, objective: MaskedLM, examples: list[dict], seed: int, batch_size: int) -> tuple[int, int]:
    """(correct, selected) over the objective's masking of each example."""
    device = model_device(model)
    correct = selected = 0
    for i in range(0, len(examples), batch_size):
        chunk = [corrupted(objective, e, example_rng(seed, 0, i + j)) for j, e in enumerate(examples[i:i + batch_size])]
        batch = {k: v.to(device) for k, v in objective.collate(chunk).items()}
        labels = batch.pop("labels")  # (B, T), -100 where not selected
        pred = model(**batch).logits.argmax(-1)  # (B, T)
        keep = labels != IGNORE_INDEX
        correct += int((pred[keep] == labels[keep]).sum())
        selected += int(keep.sum())
    return correct, selected


@torch.no_grad()
def pseudo_log_likelihood(model, example: dict, mask_id: int, special: np.ndarray, batch_size: int) -> np.ndarray:
    """log p(x_t | x without t) for each non-special position t of one example: (n,) nats."""
    device = model_device(model)
    ids = torch.from_numpy(example["input_ids"])  # (T,)
    positions = torch.from_numpy(np.flatnonzero(~np.isin(example["input_ids"], special)))  # (n,)
    extra = {k: torch.from_numpy(v)[None].to(device) for k, v in example.items() if k != "input_ids"}
    out = []
    for chunk in positions.split(batch_size):
        copies = ids.repeat(len(chunk), 1)  # (b, T): copy r masks position chunk[r]
        rows = torch.arange(len(chunk))
        copies[rows, chunk] = mask_id
        inputs = {k: v.expand(len(chunk), -1) for k, v in extra.items()}
        logits = model(input_ids=copies.to(device), **inputs).logits.float()  # (b, T, V)
        logp = logits[rows.to(device), chunk.to(device)].log_softmax(-1)  # (b, V)
        out.append(logp.gather(1, ids[chunk][:, None].to(device))[:, 0].cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def evaluate_mlm(model, tokenizer, texts: list[str], seed: int = 0, batch_size: int = 16,
                 max_length: int | None = None, pll: bool = True) -> EvalResult:
    """Masked-token accuracy and (unless pll=False) pseudo-log-likelihood of `texts`."""
    check_encoder(model, "--task mlm")
    limit = model.config.max_positions
    if max_length is not None and not 2 < max_length <= limit:
        raise PlmlabError(f"--max-length must be in [3, the model's context {limit}], got {max_length}")
    objective = MaskedLM(tokenizer, max_length or limit)
    made = pieces(tokenizer, texts, objective)
    if not made:
        raise PlmlabError("no tokens to score: the texts are empty")
    started = time.perf_counter()
    correct, selected = masked_accuracy(model, objective, [e for _, e in made], seed, batch_size)
    metrics = {"masked_accuracy": correct / selected if selected else 0.0, "masked_tokens": selected,
               "n": len(texts), "pieces": len(made)}
    items: list[dict] = [{"index": d, "tokens": 0, "pll": 0.0} for d in range(len(texts))]
    if pll:
        special = objective.masker.special
        total, tokens = 0.0, 0
        for d, example in made:
            scores = pseudo_log_likelihood(model, example, objective.masker.mask_id, special, batch_size)
            items[d]["pll"] += float(scores.astype(np.float64).sum())
            items[d]["tokens"] += len(scores)
            total, tokens = total + float(scores.astype(np.float64).sum()), tokens + len(scores)
        metrics.update(pll=total, pll_per_token=total / tokens, pseudo_perplexity=math.exp(-total / tokens),
                       tokens=tokens)
        for item in items:
            item["pseudo_perplexity"] = math.exp(-item["pll"] / item["tokens"]) if item["tokens"] else None
    seconds = time.perf_counter() - started
    metrics["tokens_per_s"] = (metrics.get("tokens") or selected) / max(seconds, 1e-9)
    return EvalResult("mlm", metrics, items)
