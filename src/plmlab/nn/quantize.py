"""int8 linear layers for inference: a quarter of their memory ("int8"), or faster CPU decoding
with the activations rounded to int8 too ("int8-dynamic"), which real LLMs do not survive.

`quantize(model, scheme)` replaces every plain nn.Linear (attention, MLP, LM head) by an int8
layer whose weight is rounded to int8 with one scale per output channel (symmetric),

    scale[o] = max_i |W[o, i]| / 127        W_q[o, i] = round(W[o, i] / scale[o])

Two schemes, which differ in what the activations go through:

  "int8"          weight-only (the default of --quantize): y = (x W_q^T) * scale + b with x as
                  it is, so the only error is the weights' rounding (half a step per weight).
                  Run by KERNELS["dequantize"], the fastest exact one measured on an AVX2 CPU,
                  where it is still slower than fp32 at batch 1 (x0.8-0.9, docs/speed.md#int8).
  "int8-dynamic"  PyTorch's fbgemm kernel `torch.ops.quantized.linear_dynamic` (torch.ao's
                  dynamic quantization): it also rounds the activations, per call, to int8 with
                  ONE scale for the whole input (7-bit range on x86). A pretrained LLM has a few
                  activation channels 10-100x larger than the rest (Dettmers et al. 2022,
                  LLM.int8(); Xiao et al. 2023, SmoothQuant); one scale sized for them rounds
                  every other channel to a handful of levels. On SmolLM2-135M perplexity goes
                  up 350 % (weight-only: +0.35 %; docs/speed.md), worst at the MLP
                  down-projection. Small models trained on the built-in corpus barely notice
                  (+0.1 %), so it stays as an explicit choice, measured with
                  `plmlab evaluate ... --quantize int8-dynamic` on the model at hand.

The embeddings stay fp32 (a step reads one row). An LM head tied to the embedding stays that
fp32 matrix under "int8" (an int8 copy would add memory, not save it) and gets its own int8 copy
under "int8-dynamic"; an untied head is quantized by both. A quantized model is for inference:
its int8 layers have no gradient, and a forward pass in training mode is refused.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import PlmlabError

SCHEMES = ("int8", "int8-dynamic")


def int8_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_q int8 (out, in), scale fp32 (out,)): symmetric, one scale per output channel."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (out,); an all-zero row stays zero
    return torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale


class _Int8Base(nn.Module):
    """What both int8 layers share: shapes, the refusal to train, the bytes a token reads."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.bias = None if linear.bias is None else linear.bias.detach().float().clone()

    def weight_bytes(self) -> int:
        """Bytes read per token: the int8 weight, its scales and the bias."""
        return self.in_features * self.out_features + 4 * self.out_features * (1 + (self.bias is not None))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.training:
            raise PlmlabError("an int8-quantized model is for inference only: train the fp32 model")
        y = self.product(x.reshape(-1, self.in_features).float())  # (N, out) fp32
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.scheme} per-channel"


# The fp32 copy of W_q is made BLOCK_BYTES at a time: one 100+ MB temporary (an untied LM head)
# would be fresh pages from the OS, page-faulted on every call (measured: 17x the fp32 product for
# a 49152 x 576 head at one row, 2.2x in 4 MB blocks); blocks this size come back from the
# allocator's free lists.
BLOCK_BYTES = 4 << 20


def _dequantize_mm(x: torch.Tensor, layer: "Int8Linear") -> torch.Tensor:
    """x W_q^T in fp32, W_q converted block by block of output rows; the per-output-channel scale
    applies after the product (one pass over W fewer)."""
    rows = max(1, BLOCK_BYTES // (4 * layer.in_features))
    blocks = layer.weight_int8.split(rows)  # (rows, in) int8 each
    if len(blocks) == 1:
        return F.linear(x, blocks[0].float()).mul_(layer.scale)
    return torch.cat([F.linear(x, b.float()) for b in blocks], dim=1).mul_(layer.scale)  # (N, out)


def _int8pack_mm(x: torch.Tensor, layer: "Int8Linear") -> torch.Tensor:
    return torch._weight_int8pack_mm(x, layer.weight_int8, layer.scale)


def _int8pack_mm_bf16(x: torch.Tensor, layer: "Int8Linear") -> torch.Tensor:
    # activations and output rounded to bf16: not the weight-only product exactly. torch 2.13's
    # CPU kernel reads past the row for bf16 when in_features is not a multiple of 8 (garbage
    # outputs, measured for every such width): those layers take the exact product instead.
    if layer.in_features % 8:
        return _dequantize_mm(x, layer)
    return torch._weight_int8pack_mm(x.bfloat16(), layer.weight_int8, layer.scale.bfloat16()).float()


# How Int8Linear multiplies; its `kernel` picks one. bench/bench_decode.py --int8-kernels times
# each; on the AVX2 CPU of docs/speed.md "dequantize" is the fastest at every batch size but one
# row, where "int8pack_mm_bf16" is on a par with it and rounds the activations (see there).
KERNELS = {"dequantize": _dequantize_mm, "int8pack_mm": _int8pack_mm, "int8pack_mm_bf16": _int8pack_mm_bf16}


class Int8Linear(_Int8Base):
    """Weight-only int8: y = (x W_q^T) * scale + b, x in fp32."""

    scheme = "int8"
    kernel = "dequantize"  # a name in KERNELS

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear)
        self.weight_int8, self.scale = int8_per_channel(linear.weight)  # (out, in) int8, (out,)

    def dequantized_weight(self) -> torch.Tensor:
        return self.weight_int8.float() * self.scale[:, None]  # (out, in) fp32

    def product(self, x: torch.Tensor) -> torch.Tensor:  # x (N, in) fp32 -> (N, out)
        y = KERNELS[self.kernel](x, self)
        return y if self.bias is None else y.add_(self.bias)


class DynamicInt8Linear(_Int8Base):
    """fbgemm's dynamic int8: the activations rounded to int8 per call too (see the module docstring)."""

    scheme = "int8-dynamic"

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__(linear)
        w = linear.weight.detach().float()  # (out, in)
        self.scale = int8_per_channel(w)[1]
        with warnings.catch_warnings():  # torch 2.13 flags quantized tensor creation as deprecated
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, self.scale.double(), torch.zeros_like(self.scale, dtype=torch.long),
                                            0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qw, self.bias)

    def dequantized_weight(self) -> torch.Tensor:
        qw, _ = torch.ops.quantized.linear_unpack(self._packed)
        return qw.dequantize()  # (out, in) fp32

    def product(self, x: torch.Tensor) -> torch.Tensor:  # x (N, in) fp32; the bias is in the pack
        return torch.ops.quantized.linear_dynamic(x, self._packed, True)


LAYERS = {"int8": Int8Linear, "int8-dynamic": DynamicInt8Linear}


def check_scheme(scheme: str | None) -> None:
    """Before any model is loaded: None or one of SCHEMES."""
    if scheme is not None and scheme not in SCHEMES:
        raise PlmlabError(f"unknown quantization {scheme!r}; choose one of {', '.join(SCHEMES)}")


def quantize(model: nn.Module, scheme: str | None) -> nn.Module:
    """The same model (changed in place, in eval mode) with its linear layers in int8; `scheme`
    None returns it unchanged. One-line PlmlabError for what cannot be quantized."""
    if scheme is None:
        return model
    check_scheme(scheme)
    if getattr(model, "quantized", None):
        if model.quantized != scheme:
            raise PlmlabError(f"this model is already quantized ({model.quantized}): load the fp32 model again")
        return model
    params = list(model.parameters())
    if params and params[0].device.type != "cpu":
        raise PlmlabError("int8 quantization runs on the CPU: use --device cpu")
    if scheme == "int8-dynamic" and "fbgemm" not in torch.backends.quantized.supported_engines and \
            "x86" not in torch.backends.quantized.supported_engines:
        raise PlmlabError("this PyTorch build has no dynamic int8 CPU kernels (fbgemm): use --quantize int8")
    # Weight-only int8 is there to hold fewer bytes: a head tied to the embedding IS the embedding
    # matrix, which stays fp32 (a step reads one row of it), so an int8 copy would add bytes, not
    # save them; in fp32 it is also faster and exact. int8-dynamic quantizes it for speed.
    tied = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)} if scheme == "int8" else set()
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear and id(m.weight) not in tied]
    if not targets:
        raise PlmlabError("this model has no linear layers to quantize")
    for name, m in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, LAYERS[scheme](m))
    model.quantized = scheme  # save_pretrained and training refuse such a model
    return model.eval()
