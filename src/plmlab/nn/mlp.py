"""Feed-forward sub-layers: plain (GPT, BERT, T5 v1.0) and gated (SwiGLU, GeGLU)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import Config

# Exact (erf) GELU for BERT / GPT-1; tanh GELU for GPT-2, ALBERT, T5 v1.1 ("gelu_new").
ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
}


def make_dropout(p: float) -> nn.Module:
    """nn.Dropout, or nn.Identity when p == 0: the same values (dropout with p = 0 returns its
    input and draws no random numbers on CPU), one op fewer per call; a decoded token passes
    through 3-4 of them per layer."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


class MLP(nn.Module):
    """down(act(up(x)))."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.up = nn.Linear(config.d_model, config.d_ff, bias=config.mlp_bias)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.mlp_bias)
        self.act = ACTIVATIONS[config.activation]
        self.dropout = make_dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(self.act(self.up(x))))


class GatedMLP(nn.Module):
    """down(act(gate(x)) * up(x)) (Shazeer 2020), gate and up fused into one matmul.

    `gate_up.weight` is [gate; up] stacked along the output dimension, the layout GLM-4
    checkpoints already use; LLaMA's separate gate_proj / up_proj are concatenated on load.
    """

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.gate_up = nn.Linear(config.d_model, 2 * config.d_ff, bias=config.mlp_bias)
        self.down = nn.Linear(config.d_ff, config.d_model, bias=config.mlp_bias)
        self.act = ACTIVATIONS[config.activation]
        self.dropout = make_dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)  # (B, T, d_ff) each
        return self.down(self.dropout(self.act(gate) * up))


def make_mlp(config: Config) -> nn.Module:
    return GatedMLP(config) if config.gated_mlp else MLP(config)
