"""Model adapters for decoding: prefill the prompt, then feed one token per row per step.

A runner hides what differs between the skeletons -- a decoder-only model attends to its own
left-padded prompt, an encoder-decoder encodes once and decodes from its start token -- behind
`prefill() -> logits`, `step(tokens) -> logits` and `reorder(rows)` (beam search). The search
loops in `search.py` only see (B, V) float32 logits.

How a decoder-only model is fed (positions, masks) is a small "inputs" object chosen by
`Config.position` from `INPUT_PREPARERS`: GLM's blank infilling (2-D positions, a prefix mask)
plugs in there.
"""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import PlmlabError
from ..masks import positions_from_padding


class CausalInputs:
    """1-D positions counted over real tokens, and the (B, past + T) padding mask.

    With no padding both are left to the model's defaults (its fused causal path)."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def prefill(self, input_ids: torch.Tensor, mask: torch.Tensor, padded: bool) -> dict:
        if not padded:
            return {}
        return {"attention_mask": mask, "position_ids": positions_from_padding(mask)}

    def step(self, mask: torch.Tensor, padded: bool, n_new: int) -> dict:
        """Inputs for the last `n_new` tokens of a (B, past + n_new) mask."""
        if not padded:
            return {}
        return {"attention_mask": mask, "position_ids": positions_from_padding(mask)[:, -n_new:]}


def _glm_inputs(config: Config):
    # GLM (Du et al. 2022): the prompt is a bidirectional Part A, the continuation a blank at
    # its end with 2-D positions (plmlab.infill; fill_blanks adds GLM's [gMASK] / [sop]).
    from ..infill import GlmPrefixInputs

    return GlmPrefixInputs(config)


# Config.position -> factory of the object that prepares a decoder's inputs.
INPUT_PREPARERS = {"learned-2d": _glm_inputs, "rotary-2d": _glm_inputs}


def make_inputs(config: Config):
    return INPUT_PREPARERS.get(config.position, CausalInputs)(config)


class DecoderRunner:
    """Decoder-only: the prompt is (B, T) left-padded ids with a (B, T) mask. `ids` grows only
    without a cache (it is re-run each step); `mask` always covers past + new tokens."""

    def __init__(self, model, input_ids: torch.Tensor, mask: torch.Tensor, max_len: int, use_cache: bool) -> None:
        self.model, self.ids, self.mask = model, input_ids, mask
        self.padded = not bool(mask.all())
        self.inputs = make_inputs(model.config)
        self.cache = model.new_cache(input_ids.shape[0], max_len) if use_cache else None

    def prefill(self) -> torch.Tensor:
        out = self.model(self.ids, cache=self.cache, **self.inputs.prefill(self.ids, self.mask, self.padded))
        return out.logits[:, -1].float()  # (B, V)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens (B,)
        self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        if self.cache is not None:
            out = self.model(tokens[:, None], cache=self.cache, **self.inputs.step(self.mask, self.padded, 1))
        else:  # no cache: run the whole sequence again (the reference for the cached path)
            self.ids = torch.cat([self.ids, tokens[:, None]], dim=1)
            out = self.model(self.ids, **self.inputs.prefill(self.ids, self.mask, self.padded))
        return out.logits[:, -1].float()

    def reorder(self, rows: torch.Tensor) -> None:
        self.ids, self.mask = self.ids.index_select(0, rows), self.mask.index_select(0, rows)
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
        h = self.model.decode(ids, self.memory, memory_mask=self.memory_mask, cache=self.cache)
        return self.model.head(h[:, -1:])[:, -1].float()  # (B, V)

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
