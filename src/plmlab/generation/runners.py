"""Model adapters for decoding: prefill the prompt, then feed one token per row per step.

A runner hides what differs between the skeletons -- a decoder-only model attends to its own
left-padded prompt, an encoder-decoder encodes once and decodes from its start token -- behind
`prefill() -> logits`, `step(tokens) -> logits` and `reorder(rows)` (beam search). The search
loops in `search.py` only see (B, V) float32 logits.

How a decoder-only model is fed (positions, masks) is a small "inputs" object that the model's
family gives (`family_of(config).decode_inputs`): 1-D positions over real tokens by default,
GLM's blank infilling (2-D positions, a prefix mask) in families/glm.py.
"""

from __future__ import annotations

import torch

from ..errors import PlmlabError
from ..families import family_of


def make_inputs(config):
    """The object that feeds a decoder's positions and masks: the model's family's (families/)."""
    return family_of(config).decode_inputs(config)


def last_logits(fn, *args, **kwargs) -> torch.Tensor:
    """fn(...)'s logits at the last position, (B, V) float32, computed in inference mode: a decode
    step is a few hundred small ops, and inference mode skips their version-counter and view
    bookkeeping (measured: ~5 % of a few-M-parameter model's step). The logits that come out are
    inference tensors; the search only reads them (its ops make ordinary tensors), so the ids
    `generate` returns can still feed a training step. The KV cache is written in place, which
    inference mode allows on the ordinary tensors it was made of."""
    with torch.inference_mode():
        out = fn(*args, **kwargs)
        return (out if isinstance(out, torch.Tensor) else out.logits)[:, -1].float()


class DecoderRunner:
    """Decoder-only: the prompt is (B, T) left-padded ids with a (B, T) mask. `ids` grows only
    without a cache (it is re-run each step); `mask` always covers past + new tokens."""

    def __init__(self, model, input_ids: torch.Tensor, mask: torch.Tensor, max_len: int, use_cache: bool) -> None:
        self.model, self.ids = model, input_ids
        # every step's mask is a view of one buffer, (B, max_len): no cat and new tensor per token
        self.mask_buf = mask.new_ones(mask.shape[0], max(max_len, mask.shape[1]))
        self.mask_buf[:, :mask.shape[1]] = mask
        self.mask = self.mask_buf[:, :mask.shape[1]]  # (B, past + new)
        self.padded = not bool(mask.all())
        self.inputs = make_inputs(model.config)
        self.cache = model.new_cache(input_ids.shape[0], max_len) if use_cache else None

    def prefill(self) -> torch.Tensor:
        return last_logits(self.model, self.ids, cache=self.cache, last_only=True,
                           **self.inputs.prefill(self.ids, self.mask, self.padded))  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens (B,)
        self.mask = self.mask_buf[:, :self.mask.shape[1] + 1]
        if self.cache is not None:
            return last_logits(self.model, tokens[:, None], cache=self.cache, last_only=True,
                               **self.inputs.step(self.mask, self.padded, 1))
        # no cache: run the whole sequence again (the reference for the cached path)
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        return last_logits(self.model, self.ids, last_only=True, **self.inputs.prefill(self.ids, self.mask, self.padded))

    def reorder(self, rows: torch.Tensor) -> None:
        self.ids, self.mask_buf = self.ids.index_select(0, rows), self.mask_buf.index_select(0, rows)
        self.mask = self.mask_buf[:, :self.mask.shape[1]]
        if self.cache is not None:
            self.cache.reorder(rows)


class EncoderDecoderRunner:
    """Encoder-decoder (T5): encode once, decode from `start` (B, 1) one token at a time."""

    def __init__(self, model, input_ids: torch.Tensor, mask: torch.Tensor, max_len: int, use_cache: bool,
                 start: int) -> None:
        if getattr(model, "head", None) is None:
            raise PlmlabError("this encoder-decoder has no LM head: it cannot generate")
        self.model = model
        self.memory = model.encode(input_ids, mask)  # (B, S, d)
        self.memory_mask = mask
        self.ids = input_ids.new_full((input_ids.shape[0], 1), start)  # decoder tokens so far
        self.cache = model.new_cache(input_ids.shape[0], max_len) if use_cache else None

    def _logits(self, ids: torch.Tensor) -> torch.Tensor:
        def decode():
            h = self.model.decode(ids, self.memory, memory_mask=self.memory_mask, cache=self.cache)
            return self.model.head(h[:, -1:])  # (B, 1, V)
        return last_logits(decode)  # (B, V)

    def prefill(self) -> torch.Tensor:
        return self._logits(self.ids)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
        return self._logits(tokens[:, None] if self.cache is not None else self.ids)

    def reorder(self, rows: torch.Tensor) -> None:
        self.ids = self.ids.index_select(0, rows)
        self.memory = self.memory.index_select(0, rows)
        self.memory_mask = self.memory_mask.index_select(0, rows)
        if self.cache is not None:
            self.cache.reorder(rows)
