"""int8 weights for inference: fewer bytes per token for a decoder that streams its weights.

`quantize(model, "int8")` replaces every plain nn.Linear (attention, MLP, LM head) by an
`Int8Linear`: its weight rounded to int8 with one scale per output channel,

    scale[o] = max_i |W[o, i]| / 127        W_q[o, i] = round(W[o, i] / scale[o])   (symmetric)

run by PyTorch's own int8 CPU kernel, `torch.ops.quantized.linear_dynamic` (fbgemm / x86, the
kernel behind torch.ao's dynamic quantization): it quantizes the activations on the fly per call
and multiplies in int8 with int32 accumulation. Measured against the other int8 kernel PyTorch
ships for weight-only int8, `torch._weight_int8pack_mm` (bench/bench_decode.py's machine, one
thread, the 50257 x 768 LM head for one token): fp32 F.linear 10.8 ms, _weight_int8pack_mm 28.7 ms
with fp32 and 2.4 ms with bf16 activations, linear_dynamic 1.1 ms; it is also the fastest for
the 8..512-row products of batched decoding and prefill, so it is the one used.

The embeddings stay fp32 (a step reads one row); a tied LM head gets its own int8 copy, the
embedding matrix it is tied to is untouched. A quantized model is for inference: its int8 layers
have no gradient, and a forward pass in training mode is refused.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from ..errors import PlmlabError

SCHEMES = ("int8",)


class Int8Linear(nn.Module):
    """y = x W^T + b with W int8 (out, in) and per-output-channel fp32 scales."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().float()  # (out, in)
        scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)  # (out,)
        bias = None if linear.bias is None else linear.bias.detach().float()
        with warnings.catch_warnings():  # torch 2.13 flags quantized tensor creation as deprecated
            warnings.simplefilter("ignore")
            qw = torch.quantize_per_channel(w, scale.double(), torch.zeros_like(scale, dtype=torch.long), 0,
                                            torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(qw, bias)
        self.scale = scale

    def weight_bytes(self) -> int:
        """Bytes read per token: the int8 weight, its scales and the bias."""
        return self.in_features * self.out_features + 4 * self.out_features * 2

    def dequantized_weight(self) -> torch.Tensor:
        qw, _ = torch.ops.quantized.linear_unpack(self._packed)
        return qw.dequantize()  # (out, in) fp32

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (..., in)
        if self.training:
            raise PlmlabError("an int8-quantized model is for inference only: train the fp32 model")
        y = torch.ops.quantized.linear_dynamic(x.reshape(-1, self.in_features).float(), self._packed, True)
        return y.view(*x.shape[:-1], self.out_features).to(x.dtype)  # (..., out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def quantize(model: nn.Module, scheme: str | None) -> nn.Module:
    """The same model (changed in place, in eval mode) with its linear layers in int8; `scheme`
    None returns it unchanged. One-line PlmlabError for what cannot be quantized."""
    if scheme is None:
        return model
    if scheme not in SCHEMES:
        raise PlmlabError(f"unknown quantization {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if getattr(model, "quantized", None):
        return model
    params = list(model.parameters())
    if params and params[0].device.type != "cpu":
        raise PlmlabError("int8 quantization runs on the CPU (PyTorch's fbgemm kernels): use --device cpu")
    if "fbgemm" not in torch.backends.quantized.supported_engines and \
            "x86" not in torch.backends.quantized.supported_engines:
        raise PlmlabError("this PyTorch build has no int8 CPU kernels (fbgemm): run without --quantize")
    targets = [(name, m) for name, m in model.named_modules() if type(m) is nn.Linear]
    if not targets:
        raise PlmlabError("this model has no linear layers to quantize")
    for name, m in targets:
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, Int8Linear(m))
    model.quantized = scheme  # save_pretrained and training refuse such a model
    return model.eval()
