"""LoRA (Hu et al. 2021): a frozen linear layer plus a trainable low-rank update.

    y = x W^T + b + scaling * dropout(x) A^T B^T        A: (r, in), B: (out, r), scaling = alpha / r

A starts kaiming-uniform and B at zero (section 4.1), so the wrapped model computes exactly
what the base model did until B learns something. `merge()` folds scaling * B A into W (no
extra cost at inference), `unmerge()` takes it out again.

`LoRALinear` subclasses nn.Linear and shares the base layer's `weight` and `bias` Parameters,
so code that reads `.weight` (tied weights, `value_weight()`) and the base state-dict keys
(`attn.qkv.weight`) are unchanged; the adapter adds `attn.qkv.lora_A` / `attn.qkv.lora_B`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LoRALinear(nn.Linear):
    def __init__(self, base: nn.Linear, r: int, alpha: float, dropout: float = 0.0) -> None:
        nn.Module.__init__(self)  # no fresh weight: the base layer's Parameters are shared
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight  # (out, in)
        self.bias = base.bias
        device, dtype = base.weight.device, base.weight.dtype
        self.lora_A = nn.Parameter(torch.empty(r, self.in_features, device=device, dtype=dtype))  # (r, in)
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, r, device=device, dtype=dtype))  # (out, r)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # nn.Linear's (and PEFT's) init
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        self.lora_dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False  # the update is inside `weight`
        self.enabled = True  # False: the base layer alone (lora_disabled)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)  # (..., out)
        if self.merged or not self.enabled:
            return y
        return y + F.linear(F.linear(self.lora_dropout(x), self.lora_A), self.lora_B) * self.scaling

    def delta(self) -> torch.Tensor:
        """scaling * B A: the update to the weight, (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta()
            self.merged = False

    def to_linear(self) -> nn.Linear:
        """A plain nn.Linear holding W + scaling * B A (the same Parameter, merged in place)."""
        self.merge()
        plain = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        plain.weight, plain.bias = self.weight, self.bias
        return plain

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, r={self.r}, alpha={self.alpha}"


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """Every adapted layer by its module name ("decoder.layers.0.attn.qkv")."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def wrap(model: nn.Module, names: list[str], r: int, alpha: float, dropout: float = 0.0) -> dict[str, LoRALinear]:
    """Replace the nn.Linear modules named `names` by LoRALinear wrappers of them."""
    out = {}
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        if isinstance(base, LoRALinear):
            raise ValueError(f"{name} already has an adapter")
        layer = LoRALinear(base, r, alpha, dropout)
        setattr(parent, child, layer)
        out[name] = layer
    return out


def merge_into_base(model: nn.Module) -> list[str]:
    """Fold every adapter into its weight and put plain nn.Linear layers back; the names merged."""
    names = list(lora_layers(model))
    for name, layer in lora_layers(model).items():
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, layer.to_linear())
    return names
