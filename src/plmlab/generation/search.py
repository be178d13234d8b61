"""The decoding loops: greedy / sampling, and beam search as `transformers` runs it.

Both loops keep the token history each row has seen (prompt + generated; for an
encoder-decoder, the decoder's start token + generated) because the history-aware filters
(repetition penalty, no-repeat-n-gram) read it, exactly as transformers' logits processors read
`input_ids`. Padding in the history is marked invalid so a left-padded batch decodes each row
as it would alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .filters import Pipeline, apply_pipeline

StopFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (generated (N, n), active (N,)) -> (N,) bool


@dataclass
class SearchOptions:
    max_new_tokens: int
    pipeline: Pipeline
    eos: torch.Tensor | None  # (n_eos,) ids that end a row, or None
    pad: int  # what a finished row receives
    do_sample: bool = False
    generator: torch.Generator | None = None
    streamer: object | None = None  # .put(tokens (B,)) / .end()
    stop: StopFn | None = None  # stop strings, decoded
    num_beams: int = 1
    length_penalty: float = 1.0
    early_stopping: bool | str = False


def _is_eos(tokens: torch.Tensor, eos: torch.Tensor | None) -> torch.Tensor:
    if eos is None:
        return torch.zeros_like(tokens, dtype=torch.bool)
    return torch.isin(tokens, eos.to(tokens.device))


def sample_search(runner, history: torch.Tensor, valid: torch.Tensor, o: SearchOptions) -> torch.Tensor:
    """Greedy (argmax) or multinomial sampling; returns (B, n) generated ids, n <= max_new_tokens.

    A finished row (EOS, or a stop string) keeps receiving `pad`; the loop ends when every row
    has finished or after max_new_tokens.
    """
    B = history.shape[0]
    finished = torch.zeros(B, dtype=torch.bool, device=history.device)
    can_finish = o.eos is not None or o.stop is not None
    start = history.shape[1]
    logits = runner.prefill() if o.max_new_tokens else None
    for step in range(o.max_new_tokens):
        scores = apply_pipeline(o.pipeline, logits, history, valid)  # (B, V)
        if o.do_sample:
            probs = scores.softmax(dim=-1)
            tokens = torch.multinomial(probs, 1, generator=o.generator).squeeze(1)
        else:
            tokens = scores.argmax(dim=-1)
        if can_finish:
            tokens = tokens.masked_fill(finished, o.pad)
        history = torch.cat([history, tokens[:, None]], dim=1)
        valid = torch.cat([valid, valid.new_ones(B, 1)], dim=1)
        if o.streamer is not None:
            o.streamer.put(tokens)
        if o.eos is not None:
            finished |= _is_eos(tokens, o.eos)
        if o.stop is not None:
            finished |= o.stop(history[:, start:], ~finished)
        if step == o.max_new_tokens - 1 or can_finish and bool(finished.all()):
            break
        # A finished row's next logits are never used: feed it a valid id, whatever `pad` is.
        logits = runner.step(tokens.masked_fill(finished, 0) if can_finish else tokens)
    if o.streamer is not None:
        o.streamer.end()
    return history[:, start:]


def _gather_beams(t: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """t (B, K, ...) gathered along the beam dim with index (B, K')."""
    while index.dim() < t.dim():
        index = index.unsqueeze(-1)
    return torch.take_along_dim(t, index, dim=1)


@dataclass
class _Beams:
    """Beam search state; the same tensors, in the same order, as transformers' `_beam_search`
    keeps, so ties break the same way."""

    running: torch.Tensor  # (B, K, max_len) token ids, prompt included
    running_scores: torch.Tensor  # (B, K) summed log-probs
    done: torch.Tensor  # (B, K, max_len) best finished hypotheses
    done_scores: torch.Tensor  # (B, K) length-penalised scores, -1e9 = empty slot
    done_len: torch.Tensor  # (B, K) generated length of each finished hypothesis
    is_done: torch.Tensor  # (B, K) slot holds a finished hypothesis
    improvable: torch.Tensor  # (B, 1) a running beam may still beat the finished ones


def beam_search(runner, history: torch.Tensor, valid: torch.Tensor, o: SearchOptions) -> torch.Tensor:
    """Beam search (transformers' vectorised algorithm): each step keeps the best
    (1 + n_eos, at least 2) x K continuations, moves the top-K ones that end (EOS, stop string or
    max length) into the finished set scored sum_logprob / generated_len ** length_penalty, and
    continues the best K that did not end. Returns the best finished hypothesis (B, n)."""
    B, T = history.shape
    K, dev = o.num_beams, history.device
    max_len = T + o.max_new_tokens
    n_eos = 0 if o.eos is None else o.eos.numel()
    keep = max(2, 1 + n_eos) * K
    top_k_mask = torch.cat([torch.ones(K, dtype=torch.bool), torch.zeros(keep - K, dtype=torch.bool)]).to(dev)
    running = torch.full((B, K, max_len), o.pad, dtype=torch.long, device=dev)
    running[:, :, :T] = history[:, None]
    valid_all = torch.cat([valid, valid.new_ones(B, o.max_new_tokens)], dim=1)  # (B, max_len)
    scores0 = torch.zeros(B, K, device=dev)
    scores0[:, 1:] = -1e9  # only beam 0 is live at first: no duplicate beams
    s = _Beams(running, scores0, running.clone(), torch.full((B, K), -1e9, device=dev),
               torch.zeros(B, K, dtype=torch.long, device=dev), torch.zeros(B, K, dtype=torch.bool, device=dev),
               torch.ones(B, 1, dtype=torch.bool, device=dev))
    batch_offset = torch.arange(B, device=dev)[:, None] * K
    logits = runner.prefill().repeat_interleave(K, dim=0)  # (B*K, V)
    runner.reorder(torch.arange(B, device=dev).repeat_interleave(K))
    cur = T
    while True:
        hist = s.running[:, :, :cur].flatten(0, 1)
        hist_valid = valid_all[:, None, :cur].expand(B, K, cur).flatten(0, 1)
        logp = apply_pipeline(o.pipeline, torch.log_softmax(logits, dim=-1), hist, hist_valid)
        V = logp.shape[-1]
        total = (logp.view(B, K, V) + s.running_scores[:, :, None]).view(B, K * V)
        top_scores, top_idx = _choose(total, keep, o)
        src = top_idx // V  # (B, keep) beam each continuation extends
        cand = _gather_beams(s.running, src)
        cand[:, :, cur] = top_idx % V
        ends = _ends(cand, cur, T, max_len, o)  # (B, keep)
        # e. the best K continuations that did not end go on
        live = top_scores + ends.float() * -1.0e9
        sel = torch.topk(live, K).indices
        s.running, s.running_scores = _gather_beams(cand, sel), _gather_beams(live, sel)
        next_rows = (_gather_beams(src, sel) + batch_offset).flatten()
        _update_finished(s, cand, top_scores, ends & top_k_mask[None], cur + 1 - T, o)
        cur += 1
        s.improvable = _still_improvable(s, cur, T, max_len, o)
        full_stop = bool(s.is_done.all()) and o.early_stopping is True
        if not bool(s.improvable.any()) or full_stop or bool(ends.all()):
            break
        runner.reorder(next_rows)
        logits = runner.step(s.running[:, :, cur - 1].flatten())
    n = int(s.done_len[:, 0].max())
    return s.done[:, 0, T:T + n]


def _choose(total: torch.Tensor, keep: int, o: SearchOptions) -> tuple[torch.Tensor, torch.Tensor]:
    if o.do_sample:  # beam sampling: draw `keep` continuations without replacement
        idx = torch.multinomial(total.softmax(dim=-1), keep, generator=o.generator)
        scores = torch.gather(total, 1, idx)
        scores, order = scores.sort(dim=-1, descending=True)
        return scores, idx.gather(-1, order)
    return torch.topk(total, keep)


def _ends(cand: torch.Tensor, cur: int, T: int, max_len: int, o: SearchOptions) -> torch.Tensor:
    B, N = cand.shape[:2]
    ends = _is_eos(cand[:, :, cur], o.eos)
    if cur + 1 >= max_len:
        ends = torch.ones_like(ends)
    if o.stop is not None:
        ends |= o.stop(cand[:, :, T:cur + 1].flatten(0, 1), ~ends.flatten()).view(B, N)
    return ends


def _update_finished(s: _Beams, cand, top_scores, just_done, gen_len: int, o: SearchOptions) -> None:
    """Merge the continuations that just ended into the finished set if they score higher."""
    scores = top_scores / (gen_len ** o.length_penalty)
    batch_full = torch.all(s.is_done, dim=-1, keepdim=True) & (o.early_stopping is True)
    scores = scores + batch_full.float() * -1.0e9
    scores = scores + (~s.improvable).float() * -1.0e9
    scores = scores + (~just_done) * -1.0e9
    merged_scores = torch.cat([s.done_scores, scores], dim=1)
    best = torch.topk(merged_scores, s.done_scores.shape[1]).indices
    s.done = _gather_beams(torch.cat([s.done, cand], dim=1), best)
    s.done_scores = _gather_beams(merged_scores, best)
    s.done_len = _gather_beams(torch.cat([s.done_len, torch.full_like(just_done, gen_len, dtype=torch.long)], 1), best)
    s.is_done = _gather_beams(torch.cat([s.is_done, just_done], dim=1), best)


def _still_improvable(s: _Beams, cur: int, T: int, max_len: int, o: SearchOptions) -> torch.Tensor:
    """Can the best running beam still beat the worst finished one? (transformers' heuristic:
    assume it ends now, or at max length with early_stopping="never" and a positive penalty)."""
    if o.early_stopping == "never" and o.length_penalty > 0.0:
        length = max_len - T
    else:
        length = cur - T
    best_running = s.running_scores[:, :1] / (length ** o.length_penalty)
    worst_done = torch.where(s.is_done, torch.min(s.done_scores, dim=1, keepdim=True)[0], -1.0e9)
    return s.improvable & torch.any(best_running > worst_done, dim=-1, keepdim=True)
