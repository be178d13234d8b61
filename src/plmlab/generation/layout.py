"""Decode-time weight layout: one token at a time, `x @ W_t` streams faster than `F.linear(x, W)`.

Decoding reads every weight once per token, so its speed is the speed at which the matrix-vector
kernels stream the weights. On the CPUs measured (bench/bench_decode.py), `F.linear` in nn.Linear's
(out, in) layout reads a large matrix at ~15 GB/s and the same product on a contiguous (in, out)
copy at ~19-27 GB/s (the LM head of a 50k vocabulary: 14.5 vs 26.7 GB/s). transformers' GPT-2
keeps its Conv1D weights (in, out) for this reason.

`decode_layout(model)` makes the linear layers of a model use such a transposed copy for the
length of one `generate` call; nothing about the model changes outside it: the parameters, their
tying (the LM head stays the embedding matrix) and what `save_pretrained` writes are untouched.
The copy is cached on the layer and rebuilt when its weight changes (a training step bumps the
tensor's version counter), so back-to-back generate calls pay the transpose once.
"""

from __future__ import annotations

import types
from contextlib import contextmanager

import torch
from torch import nn

# A transposed copy costs the weight's memory again: above this many bytes of linear weights,
# only the LM head (the layer that gains most) gets one. 1 GiB covers GPT-2-medium-sized models.
TRANSPOSE_BUDGET_BYTES = 2**30


def transposed_weight(layer: nn.Linear) -> torch.Tensor:
    """The layer's weight as a contiguous (in, out) tensor, cached until the weight changes."""
    w = layer.weight
    # a model made under torch.inference_mode has inference tensors, which keep no version counter
    # (and cannot be changed outside inference mode): their address and shape are the key
    key = (w.data_ptr(), 0 if w.is_inference() else w._version, tuple(w.shape))
    cached = layer.__dict__.get("_decode_wt")
    if cached is None or cached[0] != key:
        cached = (key, w.detach().t().contiguous())  # (in, out)
        layer.__dict__["_decode_wt"] = cached
    return cached[1]


def _forward_t(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    wt = transposed_weight(self)  # (in, out)
    if self.bias is None:
        return torch.matmul(x, wt)  # (..., out)
    return torch.matmul(x, wt).add_(self.bias)  # mm then add: faster than addmm here (measured)


def _eligible(model: nn.Module) -> list[nn.Linear]:
    """Plain fp32 CPU linear layers (LoRA and int8 layers keep their own forward)."""
    layers = [m for m in model.modules() if type(m) is nn.Linear and m.weight.dtype == torch.float32
              and m.weight.device.type == "cpu"]
    if sum(m.weight.numel() * 4 for m in layers) <= TRANSPOSE_BUDGET_BYTES:
        return layers
    head = getattr(getattr(model, "head", None), "proj", None)
    return [head] if any(m is head for m in layers) else []


@contextmanager
def decode_layout(model: nn.Module, enabled: bool = True):
    """Within the block, the model's linear layers compute `x @ W_t` (same result, up to float
    rounding order); on exit they are plain nn.Linear again."""
    # with grad on, a graph through W_t would not reach W: leave the layers as they are
    layers = _eligible(model) if enabled and not torch.is_grad_enabled() else []
    for layer in layers:
        layer.forward = types.MethodType(_forward_t, layer)
    try:
        yield
    finally:
        for layer in layers:
            layer.__dict__.pop("forward", None)


def release(model: nn.Module) -> None:
    """Free the cached transposed copies (they are rebuilt on the next generate call)."""
    for m in model.modules():
        m.__dict__.pop("_decode_wt", None)
