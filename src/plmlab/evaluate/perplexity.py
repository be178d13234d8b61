"""Perplexity and bits per byte of causal (GPT, LLaMA, ChatGLM2+) and GLM blank-infilling models.

Convention. A document is scored as the pretraining stream shows it: it starts after the
end-of-text token (`doc0 <eos> doc1 <eos> ...`, objectives/clm.py; the tokenizer's bos where it
has no eos), and the NLL of every one of its tokens is counted -- that is every token after the
first of `<eos> doc`. The closing <eos> is not scored (it is not part of the text, whose bytes
bits per byte divides by). Perplexity = exp(mean token NLL); bits per byte = total NLL / ln 2 /
UTF-8 bytes of the texts, which compares models with different tokenizers.

Sliding window (transformers' "Perplexity of fixed-length models"), over the model's *inputs*
(input t predicts token t + 1): windows of `max_length` inputs start every `stride` inputs, and a
window scores only the predictions the previous one did not make, so each token is scored once,
with at least max_length - stride tokens of context from the previous window. The last window
ends at the last input and reaches back a whole max_length (lm-eval's rule: the text's last
tokens get full context at no extra cost):

    inputs     0 1 2 3 4 5 6 7 8 9 10       max_length 6, stride 3 (input t predicts token t + 1)
    window 1   s s s s s s                  s: its prediction is scored
    window 2         c c c s s s            c: context only
    window 3             c c c c s s        (ends at the last input, max_length long)

With stride = max_length the windows are disjoint: exactly lm-eval's `loglikelihood_rolling`
(lm_eval.utils.get_rolling_token_windows with context_len 1, the HF backend's call) for its
max_length L and its prefix token set to the start token below (`prefix_token_id`; its own default
is BOS before EOS): the same windows, the same log-likelihood. The default stride (max_length / 2)
gives every token after the first window at least half a window of context, usually a lower
perplexity than disjoint windows give.

GLM with 2-D positions (Du et al. 2022, section 2.3, and the GLM repository's language-model
evaluation) predicts left to right through a [gMASK] blank: the window's context is Part A
(`[CLS] context [gMASK] <eos>`, bidirectional) and its scored tokens are the blank, Part B
(`[sop] t1 .. tk-1` predicting t1 .. tk at 2-D positions (m, 1..k)); the first window's first
token is predicted from [sop], so no start token is needed.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import PlmlabError
from ..families import family_of
from ..families.glm import GlmTokens, glm_layout
from ..pipelines.loading import model_device
from .result import EvalResult

GLM_OVERHEAD = 3  # [CLS], [gMASK] and <eos> in Part A besides the window's tokens ([sop] replaces one)


def windows(n: int, max_length: int, stride: int) -> list[tuple[int, int, int]]:
    """(begin, scored_from, end) of each window over n positions: positions [scored_from, end) are
    scored, with [begin, scored_from) as context only; every position is scored exactly once. The
    last window ends at n and reaches back max_length positions (more context, no more windows)."""
    out, prev_end = [], 0
    for begin in range(0, n, stride):
        end = min(begin + max_length, n)
        if prev_end < end:
            out.append((max(0, end - max_length) if end == n else begin, prev_end, end))
        prev_end = end
        if end == n:
            break
    return out


def start_token(tokenizer) -> int:
    """What a document starts after: the stream's <eos> (else the tokenizer's bos)."""
    for i in (tokenizer.eos_id, tokenizer.bos_id):
        if i is not None:
            return int(i)
    raise PlmlabError("perplexity needs a tokenizer with an end-of-text (or beginning) token to start documents")


def is_glm(config) -> bool:
    """Does the model predict through GLM's blank (a 2-D GLM) rather than left to right?"""
    return family_of(config).answers_as_blank


def check_window(config, max_length: int | None, stride: int | None) -> tuple[int, int]:
    """(max_length, stride): defaults of the model's context and half of it; one line when wrong."""
    limit = config.max_positions - (GLM_OVERHEAD if is_glm(config) else 0)
    max_length = limit if max_length is None else max_length
    if max_length < 2:
        raise PlmlabError(f"--max-length must be at least 2, got {max_length}")
    if max_length > limit:
        what = f"{config.max_positions} positions" + (f", {GLM_OVERHEAD} of them GLM's specials" if is_glm(config) else "")
        raise PlmlabError(f"--max-length {max_length} is beyond the model's context ({limit} tokens: {what})")
    stride = max(1, max_length // 2) if stride is None else stride
    if not 0 < stride <= max_length:
        raise PlmlabError(f"--stride must be in [1, --max-length {max_length}], got {stride}")
    return max_length, stride


def causal_rows(ids: list[int], max_length: int, stride: int) -> list[dict]:
    """One row per window of inputs (every token but the last): the window's tokens, and the
    logits [at, at + k) that predict its k scored tokens (inputs start..end-1 predict start+1..end)."""
    rows = []
    for begin, start, end in windows(len(ids) - 1, max_length, stride):
        rows.append({"input_ids": np.asarray(ids[begin:end], dtype=np.int64),
                     "targets": np.asarray(ids[start + 1:end + 1], dtype=np.int64), "at": start - begin})
    return rows


def glm_rows(ids: list[int], max_length: int, stride: int, tok: GlmTokens) -> list[dict]:
    """One GLM blank per window: Part A = [CLS] context [gMASK] <eos>, Part B = [sop] targets[:-1]."""
    rows = []
    for begin, start, end in windows(len(ids), max_length, stride):  # over the targets
        part_a = [tok.cls, *ids[begin:start], tok.gmask, tok.eos]
        targets = ids[start:end]
        position_ids, mask = glm_layout(len(part_a), [(len(part_a) - 2, len(targets))])  # at the [gMASK]
        rows.append({"input_ids": np.asarray(part_a + [tok.sop] + targets[:-1], dtype=np.int64),
                     "position_ids": position_ids, "attention_mask": mask.astype(np.int64),
                     "targets": np.asarray(targets, dtype=np.int64), "at": len(part_a)})
    return rows


def collate_rows(rows: list[dict], device) -> dict[str, torch.Tensor]:
    """Right-pad rows into model inputs. A padding query row of a square (GLM) mask attends to
    itself only: a row that sees nothing would be NaN and spread through the values."""
    T = max(len(r["input_ids"]) for r in rows)
    B = len(rows)
    ids = torch.zeros(B, T, dtype=torch.long)  # (B, T)
    square = "position_ids" in rows[0]
    mask = torch.eye(T, dtype=torch.long).repeat(B, 1, 1) if square else torch.zeros(B, T, dtype=torch.long)
    positions = torch.zeros(B, 2, T, dtype=torch.long) if square else None  # (B, 2, T)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n] = torch.from_numpy(r["input_ids"])
        if square:
            mask[b, :n, :n] = torch.from_numpy(r["attention_mask"])  # (n, n)
            positions[b, :, :n] = torch.from_numpy(r["position_ids"])
        else:
            mask[b, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if positions is not None:
        batch["position_ids"] = positions
    return {k: v.to(device) for k, v in batch.items()}


@torch.no_grad()
def row_nlls(model, rows: list[dict], batch_size: int) -> list[np.ndarray]:
    """Per-token NLL (nats) of every row's targets, batch_size rows per forward pass."""
    device = model_device(model)
    out = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        logits = model(**collate_rows(chunk, device)).logits.float()  # (B, T, V)
        for b, r in enumerate(chunk):
            k = len(r["targets"])
            target = torch.from_numpy(r["targets"]).to(device)  # (k,)
            out.append(F.cross_entropy(logits[b, r["at"]:r["at"] + k], target, reduction="none").cpu().numpy())
    return out


def evaluate_perplexity(model, tokenizer, texts: list[str], max_length: int | None = None,
                        stride: int | None = None, batch_size: int = 16) -> EvalResult:
    """Token perplexity and bits per byte of `texts` (one document each); see the module docstring."""
    config = model.config
    if not family_of(config).continues_prompt or getattr(model, "head", None) is None:  # a left-to-right LM
        raise PlmlabError(f"perplexity needs a decoder with an LM head (GPT, LLaMA, GLM); this model is {config.arch}")
    max_length, stride = check_window(config, max_length, stride)
    tok = GlmTokens.from_tokenizer(tokenizer) if is_glm(config) else None
    begin = [] if tok else [start_token(tokenizer)]
    rows, owner = [], []
    for d, text in enumerate(texts):
        ids = begin + tokenizer.encode(text, add_special_tokens=False)
        made = glm_rows(ids, max_length, stride, tok) if tok else causal_rows(ids, max_length, stride)
        rows += made
        owner += [d] * len(made)
    if not rows:
        raise PlmlabError("no tokens to score: the texts are empty")
    started = time.perf_counter()
    nlls = row_nlls(model, rows, batch_size)
    seconds = time.perf_counter() - started
    doc_nll, doc_tokens = np.zeros(len(texts)), np.zeros(len(texts), dtype=np.int64)
    for d, nll in zip(owner, nlls):
        doc_nll[d] += float(nll.astype(np.float64).sum())
        doc_tokens[d] += len(nll)
    n_bytes = [len(t.encode("utf-8")) for t in texts]
    items = [{"index": d, "tokens": int(doc_tokens[d]), "bytes": n_bytes[d], "nll": float(doc_nll[d]),
              "perplexity": math.exp(doc_nll[d] / doc_tokens[d]) if doc_tokens[d] else None,
              "bits_per_byte": doc_nll[d] / math.log(2) / n_bytes[d] if n_bytes[d] else None}
             for d in range(len(texts))]
    total, tokens, total_bytes = float(doc_nll.sum()), int(doc_tokens.sum()), sum(n_bytes)
    metrics = {"perplexity": math.exp(total / tokens), "bits_per_byte": total / math.log(2) / total_bytes,
               "nll": total / tokens, "n": len(texts), "tokens": tokens, "bytes": total_bytes,
               "max_length": max_length, "stride": stride, "tokens_per_s": tokens / max(seconds, 1e-9)}
    return EvalResult("perplexity", metrics, items)
