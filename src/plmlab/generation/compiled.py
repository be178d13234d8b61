"""`generate(..., compile=True)`: the single-token forward compiled once, over a static KV cache.

torch.compile removes the per-token Python work of the eager model (a few hundred small ops,
most of the step of a few-M-parameter model) but compiles again whenever a shape or a Python
integer it depends on changes. So after an eager prefill every step runs with the same tensors:

    tokens  (B, 1)            the step's input ids, written in place
    pos     (B, 1)            each row's position (real tokens so far; left padding not counted)
    keys    (B, 1, max_len)   which cache slots a row may attend to: its real prompt tokens and
                              every slot written so far; unwritten slots stay hidden
    slot    (1,)              the cache slot this step writes (KVCache static mode)

and the cache is (B, KV, max_len, hd) throughout. max_len is rounded up to a multiple of
`SLOT_BLOCK` so calls with nearby lengths reuse one compiled graph.
"""

from __future__ import annotations

import torch

from ..errors import PlmlabError
from ..families import family_of
from ..masks import positions_from_padding
from ..nn.quantize import quantize as to_int8
from .runners import DecoderRunner

SLOT_BLOCK = 64


def check_compilable(config, num_beams: int, use_cache: bool) -> None:
    """One-line errors for what the static-cache step does not cover."""
    if not family_of(config).static_decode or config.sliding_window is not None:
        raise PlmlabError("compile=True (--compile) covers decoder-only models with 1-D positions (not 2-D GLM "
                          "positions) and no sliding-window attention; decode this model without it")
    if num_beams > 1 or not use_cache:
        raise PlmlabError("compile=True (--compile) works with greedy decoding and sampling over the KV cache, "
                          "not with beam search or use_cache=False")


def _step(model, tokens, pos, keys, cache) -> torch.Tensor:
    return model(tokens, position_ids=pos, attention_mask=keys, cache=cache, last_only=True).logits


_compiled = None


def compiled_step():
    """One compiled function for every model: dynamo keeps a graph per model and shape."""
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_step, dynamic=False)
    return _compiled


class StaticDecoderRunner(DecoderRunner):
    """DecoderRunner whose steps keep every shape fixed (see the module docstring)."""

    def __init__(self, model, input_ids: torch.Tensor, mask: torch.Tensor, max_len: int, compile: bool = True):
        max_len = -(-max_len // SLOT_BLOCK) * SLOT_BLOCK
        super().__init__(model, input_ids, mask, max_len, use_cache=True)
        B, T = input_ids.shape
        self.n = T  # the next slot to write
        self.slot = torch.zeros(1, dtype=torch.long, device=input_ids.device)
        self.keys = torch.zeros(B, 1, max_len, dtype=torch.bool, device=input_ids.device)
        self.keys[:, 0, :T] = mask.bool()
        self.pos = positions_from_padding(mask)[:, -1:].clone()  # (B, 1) the last prompt token's
        self.tokens = torch.zeros(B, 1, dtype=torch.long, device=input_ids.device)
        self.fn = compiled_step() if compile else _step

    def prefill(self) -> torch.Tensor:
        logits = super().prefill()  # eager, dynamic cache: writes slots [0, T)
        self.cache.make_static(self.slot)
        return logits

    def step(self, tokens: torch.Tensor) -> torch.Tensor:  # tokens (B,)
        # Only in-place updates of the same tensors, so the compiled graph's guards keep passing.
        self.slot.fill_(self.n)
        self.keys[:, 0, self.n] = True
        self.pos.add_(1)
        self.tokens.copy_(tokens[:, None])
        self.n += 1
        return self.fn(self.model, self.tokens, self.pos, self.keys, self.cache)[:, -1].float()  # (B, V)

    def reorder(self, rows: torch.Tensor) -> None:
        raise PlmlabError("the static-cache runner does not reorder rows (beam search)")


def prepare_for_decoding(model, quantize: str | None = None, compile: bool = False):
    """How a loaded model will decode, decided once (the pipelines' and the CLI's --quantize /
    --compile): int8 linear layers (`plmlab.nn.quantize`, in place: "int8" weight-only, or
    "int8-dynamic") or a compiled step for every later `generate` call that does not say
    otherwise. Returns the model."""
    if quantize is not None and compile:
        # the compiled step is built and tested over fp32 linear layers only
        raise PlmlabError("--quantize and --compile cannot be combined (the compiled step covers fp32 layers): "
                          "pick one")
    if compile:
        check_compilable(model.config, 1, True)
        model.decode_compile = True
    return to_int8(model, quantize)
