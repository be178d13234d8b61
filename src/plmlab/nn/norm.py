"""LayerNorm and RMSNorm, picked by `Config.norm` from a registry."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config


class LayerNorm(nn.LayerNorm):
    """torch's LayerNorm; `bias=False` where a family has none."""


class RMSNorm(nn.Module):
    """Root-mean-square norm without mean-centring or bias (T5, LLaMA).

    Like `transformers`, the statistics are computed in fp32 and the normalised value is cast
    back before the weight multiplies it, so bf16 runs match the reference numerics.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:  # the same values without the two (no-op) casts' dispatches
            return self.weight * F.rms_norm(x, (x.shape[-1],), eps=self.eps)
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps)
        return self.weight * normed.to(x.dtype)


def make_norm(config: Config, dim: int | None = None) -> nn.Module:
    dim = dim or config.d_model
    if config.norm == "rmsnorm":
        return RMSNorm(dim, eps=config.norm_eps)
    return LayerNorm(dim, eps=config.norm_eps, bias=config.norm_bias)
